"""Real-engine fixtures. Everything a test creates carries `cai.test.run=<run id>` and is removed
by label at the end of the session, so a crashed test leaks nothing. With CI=true a missing engine
fails every integration test; it never skips them."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import threading
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest_remote import remote_host  # noqa: F401  (the second Docker host, for remote-engine tests)

RUN_ID = secrets.token_hex(4)
RUN_LABEL = "cai.test.run"
AGENT_IMAGE = os.environ.get("CAI_TEST_IMAGE", "containai:latest")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory):
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
    sweep(client, str(tmp_path_factory.getbasetemp()))
    client.close()


def sweep(client, basetemp: str) -> None:
    """Everything this run made: labelled by the harness, or made by `cai` for a workspace under
    this run's temp dir."""
    selector = {"label": f"{RUN_LABEL}={RUN_ID}"}
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True, v=True)
    for container in client.containers.list(all=True, filters={"label": "containai.workspace"}):
        if container.labels.get("containai.workspace", "").startswith(basetemp + os.sep):
            container.remove(force=True)
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


def run_cai(home: Path, *argv: str, input: str | None = None, cwd=None, timeout: float = 120, env: dict | None = None):
    """`python -m cai` with its own HOME (and so its own keys, known_hosts and ssh config)."""
    child_env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), **(env or {})}
    child_env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run([sys.executable, "-m", "cai", *argv], capture_output=True, text=True, env=child_env,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared-home")


def agent_workspace(tmp_path_factory, name: str) -> Path:
    workspace = tmp_path_factory.mktemp(name)
    workspace.chmod(0o777)  # the agent is uid 1000; pytest's dirs belong to root
    return workspace


@pytest.fixture(scope="session")
def ws(tmp_path_factory, home, docker_client, agent_image):
    """One running workspace container shared by the session, made by `cai run`."""
    workspace = agent_workspace(tmp_path_factory, "shared-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    yield workspace, name
    docker_client.api.remove_container(name, force=True)


@pytest.fixture()
def fresh(tmp_path_factory, home, docker_client, agent_image):
    """Make workspace containers with `cai run`; each is removed at teardown."""
    made: list[str] = []

    def make():
        workspace = agent_workspace(tmp_path_factory, "fresh-ws")
        done = run_cai(home, "run", "--no-agent", str(workspace))
        assert done.returncode == 0, done.stderr
        made.append(done.stdout.strip())
        return workspace, made[-1]

    yield make
    for name in made:
        try:
            docker_client.api.remove_container(name, force=True)
        except Exception:  # noqa: BLE001 - a test removed it
            pass


@pytest.fixture()
def workdir(tmp_path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


CAI = f"{sys.executable} -m cai"


class Tmux:
    """One tmux server and window running a plain bash, with the test's HOME.

    A long line is typed as `. /tmp/ctXXXXXXXX/N`, a file holding it: what appears on the screen
    then has the same length wherever the checkout and the temp dir are. (A command line that
    filled whole rows exactly made `capture-pane -J` join the output onto it.)"""

    def __init__(self, home, width=80, height=24):
        import tempfile

        self.socket = unique("cai-tmux")
        self._lines = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
        self._typed = 0
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), "PS1": "$ ", "TERM": "xterm"}
        env.pop("XDG_CONFIG_HOME", None)
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                   "bash --norc --noprofile", env=env)

    def _tmux(self, *args, env=None):
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=30, env=env)

    def type(self, line):
        if len(line) > 32:
            self._typed += 1
            script = self._lines / str(self._typed)
            script.write_text(line + "\n")
            line = f". {script}"
        self._tmux("send-keys", "-t", "t", "-l", line)
        self._tmux("send-keys", "-t", "t", "Enter")

    def key(self, name):
        self._tmux("send-keys", "-t", "t", name)

    def resize(self, width, height):
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def screen(self):
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t").stdout

    def wait_for_text(self, pattern, timeout=60):
        return wait_for(lambda: re.search(pattern, self.screen(), re.MULTILINE), timeout=timeout, interval=0.1)

    def close(self):
        import shutil

        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(self._lines, ignore_errors=True)


@pytest.fixture()
def tmux(home):
    session = Tmux(home)
    yield session
    session.close()


@pytest.fixture(scope="session")
def spare_engine(tmp_path_factory):
    """`spare_engine(i)`: a dockerd of the tests' own (see spare_engine.py), started once per session."""
    from spare_engine import SpareEngine

    started: dict[int, SpareEngine] = {}

    def get(index: int) -> SpareEngine:
        if index not in started:
            try:
                started[index] = SpareEngine(index, tmp_path_factory.getbasetemp()).start()
            except Exception as exc:  # noqa: BLE001
                if os.environ.get("CI") == "true":
                    pytest.fail(f"spare engine {index}: {exc}")
                pytest.skip(f"spare engine {index}: {exc}")
        return started[index]

    yield get
    for engine in started.values():
        engine.stop()


class RecordingProxy:
    """A second endpoint for dockerd: a unix socket at a non-default path that relays every byte
    to the engine and keeps what the client sent."""

    def __init__(self, path, upstream="/var/run/docker.sock"):
        self.path, self.upstream, self.sent = str(path), upstream, []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.upstream)
            state = {"record": bytearray()}  # one connection's, shared by its two directions
            self.sent.append(state["record"])
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def passes(self, data, upstream, state) -> bool:
        """Whether to relay this chunk; False ends the connection (a subclass may cut it)."""
        return True

    def _pump(self, source, sink, state, upstream):
        try:
            while data := source.recv(65536):
                if upstream:
                    state["record"].extend(data)
                if not self.passes(data, upstream, state):
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def container_creates(self):
        bodies = []
        for record in self.sent:
            data = bytes(record)
            for match in re.finditer(rb"POST /v[\d.]+/containers/create[^\r]*\r\n(.*?)\r\n\r\n", data, re.S):
                length = int(re.search(rb"(?i)content-length: (\d+)", match[1])[1])
                bodies.append(json.loads(data[match.end():match.end() + length]))
        return bodies

    def close(self):
        self.listener.close()


def check_session_through(cai, name: str, client, marker: str) -> None:
    """One agent session on a remote engine, through cai's ssh path there: stop refuses while it
    runs and names it; kill, wait's code, the log and prune."""
    started = cai("session", "new", "--container", name, "--log", "--",
                  "sh", "-c", f"trap 'exit 4' TERM; echo {marker}; sleep 300 & wait")
    assert started.returncode == 0, started.stderr
    session = started.stdout.strip()
    done = cai("stop", "--container", name)
    assert done.returncode == 1 and f"detached sessions: {session})" in done.stderr, done.stderr
    assert client.containers.get(name).status == "running"
    assert cai("session", "kill", "--container", name, session).returncode == 0
    waited = cai("session", "wait", "--container", name, session, timeout=60)
    assert (waited.returncode, waited.stdout) == (4, "4\n"), waited.stderr
    assert cai("session", "logs", "--container", name, session).stdout == f"{marker}\n"
    listed = json.loads(cai("session", "ls", "--container", name, "-a", "--json").stdout)
    assert [s["state"] for s in listed["sessions"] if s["name"] == session] == ["exited"]
    assert session in json.loads(cai("session", "prune", "--container", name, "--json").stdout)["removed"]
