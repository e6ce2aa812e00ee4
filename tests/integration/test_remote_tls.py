"""cai through a `tcp://` context with TLS, whose engine runs on the second host (remote_host.py).
cai has no ssh to that host: each ssh connection to the container is `docker exec -i … sshd -i`,
carried by the engine (engine.sshd_bridge_argv), and no port is published beyond its loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from types import SimpleNamespace

import pytest

from conftest import agent_workspace, check_session_through, run_cai, wait_for

DOCKER_WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
exec /usr/bin/docker "$@"
"""


@pytest.fixture(scope="module")
def tls(remote_host, tmp_path_factory):
    home = tmp_path_factory.mktemp("tls-home")
    context = remote_host.add_tls_context(home)
    # A docker CLI that leaves a line per run: the bridge is one.
    wrappers = tmp_path_factory.mktemp("tls-bin")
    docker_log = wrappers / "docker.log"
    (wrappers / "docker").write_text(DOCKER_WRAPPER.format(log=docker_log))
    (wrappers / "docker").chmod(0o755)
    env = remote_host.env(home)
    env["PATH"] = f"{wrappers}:{env['PATH']}"
    # As on many CI and corporate machines: requests would let it replace the context's CA.
    env["REQUESTS_CA_BUNDLE"] = "/etc/ssl/certs/ca-certificates.crt"
    workspace = agent_workspace(tmp_path_factory, "tls-ws")
    (workspace / "hello.txt").write_text("over tls\n")

    def cai(*argv, **kwargs):
        return run_cai(home, "--context", context, *argv, env={**env, **kwargs.pop("env", {})}, **kwargs)

    done = cai("run", "--no-agent", str(workspace))
    assert done.returncode == 0, done.stderr
    yield SimpleNamespace(cai=cai, name=done.stdout.strip(), workspace=workspace, home=home, docker=wrappers / "docker",
                          docker_log=docker_log)
    remote_host.reset()


def test_run_reaches_the_container_without_ssh_to_the_engine_host(tls, remote_host, docker_client, tmp_path):
    cai, name, home = tls.cai, tls.name, tls.home
    found = remote_host.client.containers.get(name)
    port = int(found.labels["containai.ssh-port"])
    assert found.attrs["HostConfig"]["PortBindings"]["22/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    mounts = {m["Destination"]: m for m in found.attrs["Mounts"]}
    assert mounts["/home/agent/workspace"]["Type"] == "volume"
    ssh_log = tmp_path / "ssh.log"
    done = cai("exec", "-w", str(tls.workspace), "--", "hostname", "-I", env={"CAI_TEST_SSH_LOG": str(ssh_log)})
    assert (done.returncode, done.stdout.startswith("172.31.250.")) == (0, True), done.stderr + done.stdout
    calls = ssh_log.read_text().splitlines()
    assert calls and not any(remote_host.address in call for call in calls), calls  # every ssh went to the container
    conf = (home / ".ssh" / "containai.d" / f"{name}.conf").read_text()
    assert "ProxyJump" not in conf
    bridge = f"{tls.docker} --config {home / '.docker'} --context cai-test-tls exec -i -u 0:0 -w / {found.id} /usr/sbin/sshd -i"
    assert f"    ProxyCommand {bridge}\n" in conf, conf


@pytest.mark.parametrize("code", [0, 42, 255])
def test_exec_codes_through_the_engine(tls, code):
    cai, workspace = tls.cai, tls.workspace
    done = cai("exec", "-w", str(workspace), "--", "sh", "-c", f"cat hello.txt; echo err >&2; exit {code}")
    assert (done.returncode, done.stdout, done.stderr) == (code, "over tls\n", "err\n")


def test_stdin_reaches_the_command(tls):
    cai, workspace = tls.cai, tls.workspace
    done = cai("exec", "-w", str(workspace), "--", "tr", "a-z", "A-Z", input="through the engine\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "THROUGH THE ENGINE\n", "")


def test_a_warm_exec_runs_no_bridge_and_one_ssh(tls, tmp_path):
    cai, workspace, docker_log = tls.cai, tls.workspace, tls.docker_log
    assert cai("exec", "-w", str(workspace), "--", "true").returncode == 0
    before = docker_log.read_text() if docker_log.exists() else ""
    ssh_log = tmp_path / "ssh.log"
    done = cai("exec", "-w", str(workspace), "--", "echo", "warm", env={"CAI_TEST_SSH_LOG": str(ssh_log)})
    assert (done.returncode, done.stdout) == (0, "warm\n"), done.stderr
    assert len(ssh_log.read_text().splitlines()) == 1
    assert (docker_log.read_text() if docker_log.exists() else "") == before  # the master carried it


def user_ssh_config(home):
    path = home / "user-ssh-config"
    path.write_text(f"Include {home}/.ssh/containai.d/*.conf\n")
    return path


def test_plain_ssh_and_scp_use_the_bridge(tls, remote_host, tmp_path):
    name, home = tls.name, tls.home
    config = user_ssh_config(home)
    user = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}  # the bridge's docker CLI reads it
    done = subprocess.run(["/usr/bin/ssh", "-F", str(config), name, "id", "-un"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env=user)
    assert (done.returncode, done.stdout) == (0, "agent\n"), done.stderr
    up = tmp_path / "up.txt"
    up.write_text("sent over tls\n")
    scp = ["/usr/bin/scp", "-q", "-F", str(config)]
    sent = subprocess.run([*scp, str(up), f"{name}:/tmp/up.txt"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=user)
    assert sent.returncode == 0, sent.stderr
    back = tmp_path / "back.txt"
    got = subprocess.run([*scp, f"{name}:/tmp/up.txt", str(back)], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, env=user)
    assert (got.returncode, back.read_text()) == (0, "sent over tls\n"), got.stderr
    assert remote_host.client.containers.get(name).exec_run(["cat", "/tmp/up.txt"]).output == b"sent over tls\n"


def test_a_bridged_login_is_an_ssh_session_and_stop_refuses(tls, remote_host):
    cai, name, home = tls.cai, tls.name, tls.home
    config = user_ssh_config(home)
    login = subprocess.Popen(["/usr/bin/ssh", "-F", str(config), name, "sleep", "300"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")})
    try:
        wait_for(lambda: json.loads(cai("status", "--container", name, "--json").stdout)
                 ["sessions"].get("ssh_connections") == 1, timeout=30)
        report = json.loads(cai("status", "--container", name, "--json").stdout)
        assert (report["sessions"]["state"], report["sessions"]["exec_sessions"]) == ("has", 0), report
        done = cai("stop", "--container", name)
        assert done.returncode == 1
        assert done.stderr.splitlines()[0] == \
            f"[ERROR] Container '{name}' has active sessions (ssh: 1, terminals: 0, exec: 0)", done.stderr
        assert remote_host.client.containers.get(name).status == "running"
    finally:
        login.kill()
        login.wait()
    wait_for(lambda: json.loads(cai("status", "--container", name, "--json").stdout)["sessions"]["state"] == "none",
             timeout=30)


def test_status_says_the_workspace_is_a_copy(tls):
    cai, name, workspace = tls.cai, tls.name, tls.workspace
    done = cai("status", "--container", name)
    assert done.returncode == 0, done.stderr
    assert f"  Workspace: copy of {workspace} in volume {name}-workspace" in done.stdout.splitlines(), done.stdout
    report = json.loads(cai("status", "--container", name, "--json").stdout)
    assert report["workspace"] == {"path": str(workspace), "mount": "volume", "source": f"{name}-workspace",
                                   "copy": True}
    assert report["sessions"]["state"] == "none", report


def test_cp_both_ways_through_the_engine(tls, tmp_path):
    cai, workspace = tls.cai, tls.workspace
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "ünï.txt").write_text("deep\n")
    (tree / "link").symlink_to("sub/ünï.txt")
    sent = cai("cp", str(tree), ":sent", cwd=str(workspace))
    assert sent.returncode == 0, sent.stderr
    back = tmp_path / "back"
    got = cai("cp", ":sent", str(back), cwd=str(workspace))
    assert got.returncode == 0, got.stderr
    assert (back / "sub" / "ünï.txt").read_text() == "deep\n" and (back / "link").readlink().as_posix() == "sub/ünï.txt"


def test_exec_starts_a_container_stopped_behind_cais_back(tls, remote_host):
    cai, name, workspace = tls.cai, tls.name, tls.workspace
    assert cai("exec", "-w", str(workspace), "--", "true").returncode == 0  # a warm master and reach cache
    remote_host.client.containers.get(name).stop(timeout=1)
    done = cai("exec", "-w", str(workspace), "--", "echo", "back")
    assert (done.returncode, done.stdout) == (0, "back\n"), done.stderr
    assert remote_host.client.containers.get(name).status == "running"


def test_stop_then_gc_through_the_tls_context(tls, remote_host, tmp_path_factory):
    cai, keep, home = tls.cai, tls.name, tls.home
    other = agent_workspace(tmp_path_factory, "tls-other")
    made = cai("run", "--no-agent", str(other))
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip()
    assert cai("stop", "--container", name).returncode == 0
    listed = json.loads(cai("gc", "--age", "0m", "--dry-run", "--json").stdout)
    assert [c["name"] for c in listed["candidates"]] == [name]
    assert cai("gc", "--age", "0m", "--force").returncode == 0
    names = {c.name for c in remote_host.client.containers.list(all=True)}
    assert name not in names and keep in names
    assert not (home / ".ssh" / "containai.d" / f"{name}.conf").exists()


def test_a_certificate_the_context_cannot_verify_is_a_quick_classified_error(remote_host, tmp_path):
    home = tmp_path / "home"
    env = remote_host.env(home)
    tls = remote_host.tls_dir
    # The client's own certificate as the CA: the engine's certificate does not verify against it.
    subprocess.run(["docker", "context", "create", "wrong-ca", "--docker",
                    f"host={remote_host.tls_host},ca={tls / 'client-cert.pem'},cert={tls / 'client-cert.pem'},"
                    f"key={tls / 'client-key.pem'}"], check=True, capture_output=True, timeout=30,
                   env={**os.environ, **env})
    started = time.monotonic()
    done = run_cai(home, "--context", "wrong-ca", "status", "--container", "anything", env=env)
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[:2] == ["[ERROR] The Docker engine's TLS connection failed",
                         "[ERROR]   Check the context's CA, certificate and key: docker context inspect"], done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in lines[2] and len(lines) <= 4, done.stderr


def test_agent_sessions_through_the_engine(tls, remote_host):
    cai, name = tls.cai, tls.name
    check_session_through(cai, name, remote_host.client, "via-tls")
