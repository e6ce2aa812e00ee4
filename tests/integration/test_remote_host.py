"""The remote host itself (remote_host.py), not cai: it is another engine, reached over ssh, with
its own network and its own files, and it goes away completely."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time

import pytest

from conftest import unique


def docker_cli(remote_host, home, *argv, timeout=60):
    env = {**os.environ, **remote_host.env(home)}
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run(["docker", *argv], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def remote_cli(remote_host, home, *argv, timeout=60):
    return docker_cli(remote_host, home, "--context", remote_host.add_context(home), *argv, timeout=timeout)


def free_host_port(start=2399):
    for port in range(start, start + 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port on this host")


def banner_through_remote(remote_host, home, port, timeout=30.0):
    """The first line 127.0.0.1:PORT of the remote host sends, through `ssh -W` to it."""
    env = {**os.environ, **remote_host.env(home)}
    deadline = time.monotonic() + timeout
    while True:
        ssh = subprocess.Popen(["ssh", "-W", f"127.0.0.1:{port}", remote_host.address], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = b""
        try:
            while not line.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([ssh.stdout], [], [], 0.5)
                if ready:
                    chunk = os.read(ssh.stdout.fileno(), 256)
                    if not chunk:
                        break
                    line += chunk
        finally:
            ssh.kill()
            err = ssh.communicate()[1].decode(errors="replace")
        if line.startswith(b"SSH-") or time.monotonic() > deadline:
            return line.decode(errors="replace"), err
        time.sleep(0.2)  # the container's sshd is not up yet: docker-proxy closed the connection


def test_context_reaches_another_daemon(remote_host, isolated_home, docker_client):
    context = remote_host.add_context(isolated_home)
    assert context == "cai-test-remote"
    inspected = json.loads(docker_cli(remote_host, isolated_home, "context", "inspect", context).stdout)
    # ssh://root@10.213.9.2, or .6, .10, ... when another session on this machine has slot 0
    assert inspected[0]["Endpoints"]["docker"]["Host"] == remote_host.docker_host == f"ssh://root@{remote_host.address}"
    assert remote_host.address.startswith("10.213.9.")

    info = remote_cli(remote_host, isolated_home, "info", "--format", "{{json .}}")
    assert info.returncode == 0, info.stderr
    remote, local = json.loads(info.stdout), docker_client.info()
    assert remote["ID"] == remote_host.client.info()["ID"]
    assert remote["ID"] != local["ID"]
    assert remote["Name"] == remote_host.hostname != local["Name"]

    listed = remote_cli(remote_host, isolated_home, "ps", "--format", "{{.Names}}")
    assert listed.returncode == 0, listed.stderr
    # `ssh root@ADDR docker …`, as the docker CLI's dial-stdio runs it, sees the remote engine
    over_ssh = remote_host.ssh("docker", "info", "--format", "{{.ID}}")
    assert over_ssh.returncode == 0, over_ssh.stderr
    assert over_ssh.stdout.strip() == remote["ID"]


def test_published_port_lives_on_the_remote_host(remote_host, isolated_home, docker_client, agent_image):
    port = free_host_port()
    name = unique("cai-remote-probe")
    container = remote_host.client.containers.run(agent_image, name=name, detach=True,
                                                  ports={"22/tcp": ("127.0.0.1", port)})
    try:
        remote_host.add_context(isolated_home)
        banner, err = banner_through_remote(remote_host, isolated_home, port)
        assert banner.startswith("SSH-2.0-OpenSSH"), err

        # the way cai reaches a container of a remote engine: a jump through the engine host
        env = {**os.environ, **remote_host.env(isolated_home)}
        jumped = subprocess.run(
            ["ssh", "-J", remote_host.destination, "-p", str(port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
             "agent@127.0.0.1", "true"], env=env, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL)
        assert "Permission denied (publickey" in jumped.stderr, jumped.stderr  # the container's sshd answered

        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.settimeout(5)
            probe.connect(("127.0.0.1", port))
        assert name not in {c.name for c in docker_client.containers.list(all=True)}
        assert name in {c.name for c in remote_host.client.containers.list()}
    finally:
        container.remove(force=True)


def test_local_paths_are_not_the_remote_hosts(remote_host, isolated_home, tmp_path, docker_client, agent_image):
    shared = tmp_path / "bind-me"
    shared.mkdir()
    (shared / "marker").write_text("host file\n")
    argv = ("run", "--rm", "-v", f"{shared}:/mnt/probe", "-v", f"{shared}/made-remotely:/mnt/made",
            agent_image, "ls", "-A", "/mnt/probe")

    remote = remote_cli(remote_host, isolated_home, *argv)
    assert remote.returncode == 0, remote.stderr
    assert "marker" not in remote.stdout
    assert not (shared / "made-remotely").exists()  # the remote engine made it in its own /tmp
    # an ssh session on the remote host sees what its engine made there, and nothing of ours
    seen = remote_host.ssh("ls", "-A", str(shared))
    assert (seen.returncode, seen.stdout) == (0, "made-remotely\n"), seen.stderr

    local = docker_cli(remote_host, isolated_home, "-H", "unix:///var/run/docker.sock", *argv)
    assert local.returncode == 0, local.stderr
    assert "marker" in local.stdout.split()  # the same command on this host's engine does see it
    if (shared / "made-remotely").exists():
        (shared / "made-remotely").rmdir()


def test_teardown_leaves_nothing(remote_host, docker_client):
    """A host of its own (no image, so quick), started and stopped here; the session's stays up."""
    from remote_host import RemoteHost, processes_in

    own = RemoteHost(images=()).start()
    try:
        assert own.veth != remote_host.veth and own.address != remote_host.address
        pidns, veth = own.pidns, own.veth
        recorded = own.recorded["processes"]
        assert {"init", "dockerd", "containerd", "sshd"} <= set(recorded)
        assert own.client.ping()
        assert os.path.exists(f"/sys/class/net/{veth}")
    finally:
        own.stop()
    assert not os.path.exists(f"/sys/class/net/{veth}")
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    for name, (pid, starttime) in recorded.items():
        assert not os.path.exists(f"/proc/{pid}") or _starttime(pid) != starttime, f"{name} ({pid}) survived"
    assert processes_in(pidns) == []
    assert not own.state_dir.exists() and not own.data_root.exists()
    assert not own.slot.lock_path.exists()
    assert os.path.exists("/sys/class/net/docker0")  # the host's bridge is untouched
    assert docker_client.ping()
    assert remote_host.client.ping()  # and the session's remote host is still there


def _starttime(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])
