"""cai through an `ssh://` context whose engine runs on another host (remote_host.py): the
container's sshd stays on that host's loopback and cai, and plain ssh, reach it through the jump."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from conftest import agent_workspace, run_cai


@pytest.fixture(scope="module")
def remote(remote_host, tmp_path_factory):
    home = tmp_path_factory.mktemp("remote-home")
    context = remote_host.add_context(home)
    workspace = agent_workspace(tmp_path_factory, "remote-ws")
    (workspace / "hello.txt").write_text("from the laptop\n")
    env = remote_host.env(home)

    def cai(*argv, **kwargs):
        return run_cai(home, "--context", context, *argv, env={**env, **kwargs.pop("env", {})}, **kwargs)

    done = cai("run", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    yield cai, name, workspace, home, env
    remote_host.reset()


def test_run_puts_the_container_on_the_remote_engine_only(remote, remote_host, docker_client):
    cai, name, workspace, _, _ = remote
    found = remote_host.client.containers.get(name)
    port = int(found.labels["containai.ssh-port"])
    assert found.attrs["HostConfig"]["PortBindings"]["22/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})  # not on this host's engine
    with socket.socket() as probe:  # nor on this host's loopback
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    # The workspace is a copy in a volume of the remote engine, never a bind of a path it lacks.
    mounts = {m["Destination"]: m for m in found.attrs["Mounts"]}
    assert mounts["/home/agent/workspace"]["Type"] == "volume"
    assert found.labels["containai.workspace-volume"] == mounts["/home/agent/workspace"]["Name"]


@pytest.mark.parametrize("code", [0, 42, 255])
def test_exec_codes_through_the_jump(remote, code):
    cai, _, workspace, _, _ = remote
    done = cai("exec", "-w", str(workspace), "--", "sh", "-c", f"cat hello.txt; echo err >&2; exit {code}")
    assert (done.returncode, done.stdout, done.stderr) == (code, "from the laptop\n", "err\n")


def test_plain_ssh_uses_the_jump_in_name_conf(remote, remote_host):
    _, name, _, home, env = remote
    conf = home / ".ssh" / "containai.d" / f"{name}.conf"
    assert f"ProxyJump root@{remote_host.address}" in conf.read_text()
    # What a user's ~/.ssh/config holds: the Include, and their own entry for the engine host.
    user_config = home / "user-ssh-config"
    user_config.write_text(f"Include {conf}\n{remote_host.ssh_config_block()}\n")
    done = subprocess.run(["/usr/bin/ssh", "-F", str(user_config), name, "id", "-un"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, "agent\n"), done.stderr


def test_status_reads_the_remote_container(remote):
    cai, name, _, _, _ = remote
    done = cai("status", "--container", name, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "running"
    assert report["sessions"]["state"] == "none", report["sessions"]


def test_an_unreachable_engine_host_is_a_quick_classified_error(tmp_path):
    home = tmp_path / "home"
    subprocess.run(["docker", "context", "create", "dead-host", "--docker", "host=ssh://root@10.213.9.250"],
                   check=True, capture_output=True, env={"DOCKER_CONFIG": str(home / ".docker"), "PATH": "/usr/bin:/bin"})
    import time

    started = time.monotonic()
    done = run_cai(home, "--context", "dead-host", "doctor")
    assert done.returncode == 1
    assert time.monotonic() - started < 15
    assert "Unexpected error" not in done.stderr
    assert done.stderr.splitlines()[0].startswith("[ERROR] ")
