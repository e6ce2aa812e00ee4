"""Extra dockerd instances that belong to the tests alone.

`cai gc --force` removes every stale cai container of an engine. On the shared engine that would
include a developer's own containers, so gc is tested on engines of its own: each its own
data root, exec root, socket and containerd, with no bridge network and no iptables rules. Their
image is a few MB: `sleep` and `true` with their libraries, imported from this host. Each runs in
a network namespace of its own (`unshare --net`): a dockerd without a bridge deletes `docker0`,
which would break the shared engine.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import docker

IMAGE = "cai-tiny:sleep"
RUN_LABEL = "cai.test.run"
_PROGRAMS = ("/bin/sleep", "/bin/true")


def _tiny_rootfs_tar() -> bytes:
    paths = set(_PROGRAMS)
    for program in _PROGRAMS:
        linked = subprocess.run(["ldd", program], capture_output=True, text=True, timeout=30, check=True).stdout
        paths.update(re.findall(r"(/\S+) \(0x", linked))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
        for path in sorted(paths):
            tar.add(path, arcname=path.lstrip("/"))
    return buffer.getvalue()


class SpareEngine:
    def __init__(self, index: int, log_dir: Path) -> None:
        self.index = index
        self.socket = f"/run/cai-test-engine-{index}.sock"
        self.host = f"unix://{self.socket}"
        self.context = f"cai-spare-{index}"
        self._pidfile = f"/run/cai-test-engine-{index}.pid"
        self._log = log_dir / f"dockerd-spare-{index}.log"
        self._process: subprocess.Popen | None = None
        self.client = docker.DockerClient(base_url=self.host, version="1.41", timeout=60)

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def start(self) -> "SpareEngine":
        if os.geteuid() != 0:
            raise RuntimeError("a spare dockerd needs root")
        if not self._answers():
            with open(self._log, "ab") as log:
                self._process = subprocess.Popen(
                    ["unshare", "--net", "dockerd", f"--data-root=/var/lib/cai-test-engine-{self.index}",
                     f"--exec-root=/run/cai-test-engine-{self.index}", f"--pidfile={self._pidfile}",
                     f"--host={self.host}", "--bridge=none", "--iptables=false", "--ip6tables=false",
                     "--storage-driver=overlay2"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )
            deadline = time.monotonic() + 60
            while not self._answers():
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"spare dockerd {self.index} did not start; see {self._log}")
                time.sleep(0.2)
        self.reset()
        try:
            self.client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            repository, tag = IMAGE.split(":")
            self.client.api.import_image_from_data(_tiny_rootfs_tar(), repository=repository, tag=tag)
        self._settle()
        return self

    def _settle(self, budget: float = 20.0) -> None:
        """Until the docker CLI lists this engine's containers quickly: a dockerd that has just
        started answers its first requests slowly, and completion gives the CLI only 0.5 s."""
        deadline = time.monotonic() + budget
        quick = 0
        while quick < 3 and time.monotonic() < deadline:
            started = time.monotonic()
            subprocess.run(["docker", "-H", self.host, "ps", "-a", "-q"], capture_output=True, timeout=30)
            quick = quick + 1 if time.monotonic() - started < 0.2 else 0

    def reset(self) -> None:
        """Nothing but the tiny image: this engine is the tests' alone."""
        for container in self.client.containers.list(all=True):
            container.remove(force=True)
        for image in self.client.images.list():
            for tag in image.tags:
                if tag != IMAGE:
                    self.client.images.remove(tag, force=True)

    def stop(self) -> None:
        self.reset()
        self.client.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            return
        try:  # left running by an earlier, interrupted session
            os.kill(int(Path(self._pidfile).read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + 30
        while self._answers() and time.monotonic() < deadline:
            time.sleep(0.2)

    def add_context(self, home: Path) -> str:
        """A docker context named for this engine, in `home`'s docker config."""
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
        exists = subprocess.run(["docker", "context", "inspect", self.context], env=env, capture_output=True, timeout=30)
        if exists.returncode != 0:
            subprocess.run(["docker", "context", "create", self.context, "--docker", f"host={self.host}"],
                           env=env, check=True, capture_output=True, timeout=30)
        return self.context

    # --- fixtures in every state ---------------------------------------------------------------

    def make(self, state: str, *, name: str, labels: dict[str, str] | None = None, managed: str | None = "true",
             image: str = IMAGE) -> "docker.models.containers.Container":
        """A container in `state`: created, running, paused, exited or restarting."""
        all_labels = {RUN_LABEL: "spare", **(labels or {})}
        if managed is not None:
            all_labels["containai.managed"] = managed
        command = ["/bin/sleep", "3600"]
        extra: dict = {}
        if state == "restarting":  # `sleep x` fails at once, and the policy starts it again and again
            command, extra = ["/bin/sleep", "x"], {"restart_policy": {"Name": "always"}}
        container = self.client.containers.create(image, command, name=name, labels=all_labels, network_mode="none",
                                                  **extra)
        if state == "created":
            return container
        container.start()
        if state == "paused":
            container.pause()
        elif state == "exited":
            container.kill()
        self.wait_state(container, state)
        return container

    def make_image(self, reference: str) -> None:
        """A new image (an id of its own) tagged `reference`, committed from a throwaway container."""
        source = self.client.containers.create(IMAGE, ["/bin/true"], network_mode="none")
        repository, tag = reference.rsplit(":", 1)
        source.commit(repository, tag, conf={"Labels": {"cai.test.image": reference}})
        source.remove()

    def wait_state(self, container, state: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            container.reload()
            if container.attrs["State"]["Status"] == state:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{container.name} is {container.attrs['State']['Status']}, not {state}")
            time.sleep(0.05)

    def names(self) -> set[str]:
        return {c.name for c in self.client.containers.list(all=True)}
