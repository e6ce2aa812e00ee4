"""Real-engine fixtures. Everything a test creates carries `cai.test.run=<run id>` and is removed
by label at the end of the session, so a crashed test leaks nothing. With CI=true a missing engine
fails every integration test; it never skips them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_ID = secrets.token_hex(4)
RUN_LABEL = "cai.test.run"
AGENT_IMAGE = os.environ.get("CAI_TEST_IMAGE", "containai:latest")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        message = f"no Docker engine answers at /var/run/docker.sock: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield client
    sweep(client)
    client.close()


def sweep(client) -> None:
    selector = {"label": f"{RUN_LABEL}={RUN_ID}"}
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters=selector):
        volume.remove(force=True)


@pytest.fixture(scope="session")
def agent_image(docker_client):
    try:
        docker_client.images.get(AGENT_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"{AGENT_IMAGE} is missing: run scripts/setup.sh first")
    return AGENT_IMAGE


def unique(prefix: str = "cai-test") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture()
def make_container(docker_client):
    """Create a labelled container (not started unless asked); removed at teardown."""
    created = []

    def make(image=AGENT_IMAGE, name=None, labels=None, start=True, **kwargs):
        all_labels = {RUN_LABEL: RUN_ID, **(labels or {})}
        container = docker_client.containers.create(image, name=name or unique(), labels=all_labels, **kwargs)
        created.append(container)
        if start:
            container.start()
        return container

    yield make
    for container in created:
        try:
            container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture()
def cai(isolated_home):
    """Run the real `cai` in a child process with the test's HOME and docker config."""

    def run(*argv: str, env: dict | None = None, input: str | None = None, timeout: float = 120) -> Result:
        child_env = {**os.environ, "CI": os.environ.get("CI", ""), **(env or {})}
        child_env = {k: v for k, v in child_env.items() if v is not None}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "cai", *argv], capture_output=True, text=True, timeout=timeout,
            env=child_env, input=input, stdin=None if input is not None else subprocess.DEVNULL,
            cwd=str(isolated_home),
        )
        return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    return run


def create_context(name: str, host: str) -> None:
    subprocess.run(["docker", "context", "create", name, "--docker", f"host={host}"],
                   check=True, capture_output=True, timeout=30)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture()
def workdir(tmp_path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path
