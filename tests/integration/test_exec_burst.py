"""Agents run commands in parallel, often right after the container starts: a burst of `cai exec`
on a new container, with no cached target and no shared connection yet, runs every command once,
with its own streams and exit code, and without a retry or a `[WARN]`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from conftest import AGENT_IMAGE, agent_workspace, run_cai

BURST = 60  # past sshd's default MaxStartups (10) and MaxSessions (10), and quick on 2 cores
# Every command waits until all of them run, so that the burst's sessions are open at once.
TOGETHER = """
: > "/tmp/burst/$1"
for _ in $(seq 600); do [ "$(ls /tmp/burst | wc -l)" -ge "$2" ] && break; sleep 0.1; done
echo "out $1"; echo "err $1" >&2; exit $(($1 % 4))
"""


def logins(docker_client, name: str) -> int:
    """sshd's own count (`sshd -e` logs to the container's output): one line per connection."""
    return docker_client.api.logs(name).decode(errors="replace").count("Accepted publickey for agent")


@pytest.fixture()
def new_container(tmp_path, tmp_path_factory, docker_client, agent_image):
    """(home, workspace, name) of a container just made by `cai run --fresh -- true`, as an agent's
    first command makes it: no cached target, no shared connection."""
    home = tmp_path / "burst-home"
    home.mkdir()
    workspace = agent_workspace(tmp_path_factory, "burst-ws")
    made = run_cai(home, "run", "--image", AGENT_IMAGE, "--fresh", str(workspace), "--", "mkdir", "/tmp/burst")
    assert made.returncode == 0, made.stderr
    dry = run_cai(home, "run", "--dry-run", str(workspace)).stdout
    name = dict(line.split("=", 1) for line in dry.splitlines())["CONTAINER_NAME"]
    yield home, workspace, name
    docker_client.api.remove_container(name, force=True)


def test_a_burst_of_first_execs_shares_one_connection_without_a_retry(new_container, docker_client):
    home, workspace, name = new_container
    before = logins(docker_client, name)
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    for var in ("XDG_CONFIG_HOME", "CAI_SSH_MULTIPLEX"):
        env.pop(var, None)
    children = [subprocess.Popen([sys.executable, "-m", "cai", "exec", "-w", str(workspace), "--",
                                  "sh", "-c", TOGETHER, "burst", str(i), str(BURST)],
                                 env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
                for i in range(BURST)]
    done = [(child.returncode, out, err) for child in children for out, err in [child.communicate(timeout=300)]]
    warned = [err for _, _, err in done if "[WARN]" in err]
    assert not warned, f"{len(warned)} of {BURST} warned, e.g. {warned[0]!r}"
    assert done == [(i % 4, f"out {i}\n", f"err {i}\n") for i in range(BURST)]
    assert logins(docker_client, name) - before == 1  # one dialled; the others' sessions went over its connection


def test_plain_ssh_from_an_agents_tools_is_not_dropped_in_a_burst(new_container, docker_client):
    """What does not go through cai's shared connection (rsync, git, Ansible's forks over `ssh
    NAME`) dials once per call: sshd's MaxStartups must let such a burst in."""
    home, _, name = new_container
    before = logins(docker_client, name)
    conf = home / ".ssh" / "containai.d" / f"{name}.conf"
    children = [subprocess.Popen(["ssh", "-F", str(conf), "-o", "BatchMode=yes", name,
                                  shlex.join(["sh", "-c", TOGETHER, "burst", str(i), str(BURST)])],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(BURST)]
    done = [(child.returncode, out, err) for child in children for out, err in [child.communicate(timeout=300)]]
    assert done == [(i % 4, f"out {i}\n", f"err {i}\n") for i in range(BURST)]
    assert logins(docker_client, name) - before == BURST
