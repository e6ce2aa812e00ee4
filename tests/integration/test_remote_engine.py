"""cai through an `ssh://` context whose engine runs on another host (remote_host.py): the
container's sshd stays on that host's loopback and cai, and plain ssh, reach it through the jump."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import agent_workspace, check_session_through, run_cai, wait_for


@pytest.fixture(scope="module")
def remote(remote_host, tmp_path_factory):
    home = tmp_path_factory.mktemp("remote-home")
    context = remote_host.add_context(home)
    workspace = agent_workspace(tmp_path_factory, "remote-ws")
    (workspace / "hello.txt").write_text("from the laptop\n")
    env = remote_host.env(home)

    def cai(*argv, **kwargs):
        return run_cai(home, "--context", context, *argv, env={**env, **kwargs.pop("env", {})}, **kwargs)

    done = cai("run", "--no-agent", str(workspace))
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

    started = time.monotonic()
    done = run_cai(home, "--context", "dead-host", "status", "--container", "anything")
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "[ERROR] Cannot reach the Docker engine over SSH", done.stderr
    assert "10.213.9.250" in lines[1] and "timed out" in lines[1], done.stderr


def user_ssh_config(home, remote_host):
    """What a user's ~/.ssh/config holds: the Include of cai's confs (spelled out: OpenSSH's `~`
    is the passwd home, not the test's HOME) and their own entry for the engine host."""
    path = home / "user-ssh-config"
    path.write_text(f"Include {home}/.ssh/containai.d/*.conf\n{remote_host.ssh_config_block()}\n")
    return path


@pytest.fixture()
def another(remote, tmp_path_factory, remote_host):
    """A second container on the remote engine, for tests that stop or remove it."""
    cai, _, _, home, env = remote
    made = []

    def make():
        workspace = agent_workspace(tmp_path_factory, "remote-other")
        done = cai("run", "--no-agent", str(workspace))
        assert done.returncode == 0, done.stderr
        made.append(done.stdout.strip())
        return workspace, made[-1]

    yield make
    for name in made:
        try:
            remote_host.client.api.remove_container(name, force=True, v=True)
        except Exception:  # noqa: BLE001 - the test removed it
            pass


def test_stdin_and_separate_streams(remote):
    cai, _, workspace, _, _ = remote
    done = cai("exec", "-w", str(workspace), "--", "sh", "-c", "tr a-z A-Z; echo to-err >&2",
               input="through the jump\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "THROUGH THE JUMP\n", "to-err\n")


def test_a_remote_255_is_the_commands_own_code_once(remote):
    cai, _, workspace, _, _ = remote
    done = cai("exec", "-w", str(workspace), "--", "sh", "-c", "echo once; exit 255")
    assert (done.returncode, done.stdout.count("once")) == (255, 1), done.stderr


def test_scp_both_ways_through_the_jump(remote, remote_host, tmp_path):
    _, name, _, home, _ = remote
    config = user_ssh_config(home, remote_host)
    up = tmp_path / "up.txt"
    up.write_text("sent up\n")
    scp = ["/usr/bin/scp", "-q", "-F", str(config)]
    sent = subprocess.run([*scp, str(up), f"{name}:/tmp/up.txt"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert sent.returncode == 0, sent.stderr
    back = tmp_path / "back.txt"
    got = subprocess.run([*scp, f"{name}:/tmp/up.txt", str(back)], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert got.returncode == 0, got.stderr
    assert back.read_text() == "sent up\n"
    assert remote_host.client.containers.get(name).exec_run(["cat", "/tmp/up.txt"]).output == b"sent up\n"


def test_shell_under_tmux(remote, remote_host):
    _, _, workspace, home, env = remote
    from conftest import CAI, Tmux

    session = Tmux(home)
    try:
        session.type(f"export PATH='{env['PATH']}'")
        session.type(f"{CAI} --context {remote_host.context} shell {workspace}; echo \"rc=$?\"")
        session.wait_for_text(r"agent@")
        session.type("cat hello.txt; echo $((6*7))")  # short: typed as is, inside the container
        session.wait_for_text(r"^from the laptop\n42$")
        session.type("exit 3")
        session.wait_for_text(r"^rc=3$")
    finally:
        session.close()


def test_stop_refuses_while_someone_is_logged_in(remote, another, remote_host):
    cai, _, _, home, _ = remote
    _, name = another()
    config = user_ssh_config(home, remote_host)
    login = subprocess.Popen(["/usr/bin/ssh", "-F", str(config), name, "sleep", "300"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: json.loads(cai("status", "--container", name, "--json").stdout)
                 ["sessions"].get("ssh_connections") == 1, timeout=30)
        done = cai("stop", "--container", name)
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"[ERROR] Container '{name}' has active sessions (ssh: 1, terminals: 0, exec: 0)",
            f"Use --force to stop it anyway: cai stop --container {name} --force"]
        assert remote_host.client.containers.get(name).status == "running"
    finally:
        login.kill()
        login.wait()
    wait_for(lambda: json.loads(cai("status", "--container", name, "--json").stdout)["sessions"]["state"] == "none",
             timeout=30)
    stopped = cai("stop", "--container", name)
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (0, "", "")
    assert remote_host.client.containers.get(name).status == "exited"


def test_status_text_names_the_container_and_its_sessions(remote):
    cai, name, _, _, _ = remote
    done = cai("status", "--container", name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"Container: {name}", "  Status: running"]
    assert "  Image: containai:latest" in lines
    assert "    SSH connections: 0" in lines


def test_export_and_import_round_trip_through_the_remote(remote, remote_host, tmp_path):
    cai, name, _, _, _ = remote
    data_volume = next(m["Name"] for m in remote_host.client.containers.get(name).attrs["Mounts"]
                       if m["Destination"] == "/mnt/agent-data")
    planted = remote_host.client.containers.get(name).exec_run(
        ["sh", "-c", "mkdir -p /mnt/agent-data/claude && echo remote > '/mnt/agent-data/claude/ünï côde.txt'"])
    assert planted.exit_code == 0
    archive = tmp_path / "remote.tgz"
    exported = cai("export", "--container", name, "-o", str(archive))
    assert exported.returncode == 0, exported.stderr
    import tarfile

    with tarfile.open(archive) as tar:
        assert tar.extractfile("./claude/ünï côde.txt").read() == b"remote\n"
    copy = "remote-import-copy"
    imported = cai("import", "--data-volume", copy, "--from", str(archive))
    assert imported.returncode == 0, imported.stderr
    again = tmp_path / "again.tgz"
    assert cai("export", "--data-volume", copy, "-o", str(again)).returncode == 0
    with tarfile.open(again) as tar:
        assert tar.extractfile("./claude/ünï côde.txt").read() == b"remote\n"
    assert data_volume != copy and {v.name for v in remote_host.client.volumes.list()} >= {data_volume, copy}


def test_gc_dry_run_then_force_then_ssh_cleanup(remote, another, remote_host):
    cai, keep, _, home, _ = remote
    _, name = another()
    assert cai("stop", "--container", name).returncode == 0
    conf = home / ".ssh" / "containai.d" / f"{name}.conf"
    assert conf.exists()
    listed = cai("gc", "--age", "0m", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)["candidates"]] == [name]
    removed = cai("gc", "--age", "0m", "--force")
    assert removed.returncode == 0, removed.stderr
    names = {c.name for c in remote_host.client.containers.list(all=True)}
    assert name not in names and keep in names
    assert not conf.exists()
    cleaned = cai("ssh", "cleanup")
    assert cleaned.returncode == 0, cleaned.stderr
    assert (home / ".ssh" / "containai.d" / f"{keep}.conf").exists()  # a container that still exists keeps its conf


def test_a_warm_exec_makes_no_engine_connection(remote, tmp_path):
    cai, _, workspace, _, _ = remote
    assert cai("exec", "-w", str(workspace), "--", "true").returncode == 0  # warms the reach cache and master
    log = tmp_path / "ssh.log"
    done = cai("exec", "-w", str(workspace), "--", "echo", "warm", env={"CAI_TEST_SSH_LOG": str(log)})
    assert (done.returncode, done.stdout) == (0, "warm\n"), done.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "dial-stdio" not in calls[0], calls  # the exec itself, over the master


def test_a_cold_status_logs_in_to_the_engine_host_a_few_times_only(remote, tmp_path):
    """One pooled connection per client, not one ssh login per request."""
    cai, name, _, _, _ = remote
    log = tmp_path / "ssh.log"
    done = cai("status", "--container", name, "--json", env={"CAI_TEST_SSH_LOG": str(log)})
    assert done.returncode == 0, done.stderr
    dials = [line for line in log.read_text().splitlines() if "dial-stdio" in line]
    assert 1 <= len(dials) <= 5, dials


# --- what goes wrong on the way to the engine host ------------------------------------------------


def engine_host_alias(home, remote_host, alias: str, *options: str) -> None:
    """A `Host alias` entry for the engine host in `home`'s ssh config, with `options` of its own."""
    config = home / ".ssh" / "config"
    with config.open("a") as out:
        out.write("\n".join([f"Host {alias}", f"    HostName {remote_host.address}", "    User root",
                             "    IdentitiesOnly yes", "    StrictHostKeyChecking yes", "    BatchMode yes",
                             *(f"    {o}" for o in options), ""]))


@pytest.mark.parametrize("case, says", [
    ("refused-login", "Permission denied"),
    ("unknown-host-key", "Host key verification failed"),
    ("no-docker-cli", "docker: not found"),
])
def test_engine_host_failures_are_classified_within_10_s(case, says, remote_host, tmp_path):
    home = tmp_path / "home"
    remote_host.write_ssh_config(home)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
    (tmp_path / "empty_known_hosts").write_text("")
    key, known = {
        "refused-login": (stranger, remote_host.known_hosts),
        "unknown-host-key": (remote_host.client_key, tmp_path / "empty_known_hosts"),
        "no-docker-cli": (remote_host.no_docker_key, remote_host.known_hosts),
    }[case]
    engine_host_alias(home, remote_host, case, f'IdentityFile "{key}"', f'UserKnownHostsFile "{known}"')
    env = remote_host.env(home)
    subprocess.run(["docker", "context", "create", case, "--docker", f"host=ssh://{case}"],
                   check=True, capture_output=True, timeout=30, env={**os.environ, **env})
    started = time.monotonic()
    done = run_cai(home, "--context", case, "status", "--container", "anything", env=env)
    assert time.monotonic() - started < 10
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert lines[0] == "[ERROR] Cannot reach the Docker engine over SSH", done.stderr
    assert says in done.stderr and len(lines) <= 4 and "Traceback" not in done.stderr, done.stderr
    if case == "no-docker-cli":
        assert "no `docker` on the PATH of a non-interactive ssh login" in done.stderr, done.stderr


def test_a_jump_that_fails_is_13_not_the_commands_code(remote, remote_host):
    """The engine host still runs docker for this key, but refuses to forward to the container."""
    cai, name, workspace, home, _ = remote
    assert cai("exec", "-w", str(workspace), "--", "true").returncode == 0  # the reach cache is warm
    assert cai("status", "--container", name).returncode == 0  # and the shared master is gone
    config = home / ".ssh" / "config"
    kept = config.read_text()
    config.write_text(kept.replace(str(remote_host.client_key), str(remote_host.no_forwarding_key)))
    try:
        started = time.monotonic()
        done = cai("exec", "-w", str(workspace), "--", "sh", "-c", "exit 7")
        assert time.monotonic() - started < 10
    finally:
        config.write_text(kept)
    assert done.returncode == 13, done.stderr
    assert done.stderr.startswith("[ERROR] SSH connection failed: non-transient error\n"), done.stderr
    assert f"root@{remote_host.address}: " in done.stderr and "administratively prohibited" in done.stderr, done.stderr


def test_same_name_on_this_host_and_the_remote_keeps_pins_and_masters_apart(remote, remote_host, docker_client,
                                                                             agent_image, tmp_path_factory):
    cai, name, workspace, home, env = remote
    local_workspace = agent_workspace(tmp_path_factory, "same-name")

    def on(context, *argv, **kwargs):
        return run_cai(home, "--context", context, *argv, env={**env, **kwargs.pop("env", {})}, **kwargs)

    made = on("default", "run", "--no-agent", "--container", name, cwd=str(local_workspace))
    try:
        assert made.returncode == 0, made.stderr
        local_id = docker_client.containers.get(name).id
        remote_id = remote_host.client.containers.get(name).id
        for _ in range(2):  # cold, then warm through each one's own master
            here = on("default", "exec", "--container", name, "--", "hostname", "-I")
            there = on(remote_host.context, "exec", "--container", name, "--", "hostname", "-I")
            assert (here.returncode, there.returncode) == (0, 0), here.stderr + there.stderr
            assert here.stdout.startswith("172.17.") and there.stdout.startswith("172.31.250."), (here.stdout, there.stdout)
        known = (home / ".config" / "containai" / "known_hosts").read_text()
        assert f"cai-default-{local_id[:12]}" in known and f"cai-{remote_host.context}-{remote_id[:12]}" in known
        # Removing the local one leaves the remote one's pins, and the remote one still answers.
        assert on("default", "stop", "--container", name, "--remove").returncode == 0
        known = (home / ".config" / "containai" / "known_hosts").read_text()
        assert f"cai-default-{local_id[:12]}" not in known and f"cai-{remote_host.context}-{remote_id[:12]}" in known
        again = on(remote_host.context, "exec", "--container", name, "--", "hostname", "-I")
        assert (again.returncode, again.stdout.startswith("172.31.250.")) == (0, True), again.stderr
    finally:
        try:
            docker_client.api.remove_container(name, force=True, v=True)
        except Exception:  # noqa: BLE001 - removed above
            pass


def test_status_of_all_contexts_shows_the_remote_container_under_its_context(remote, remote_host):
    _, name, _, home, env = remote
    done = run_cai(home, "status", "--all-contexts", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert remote_host.context in report["contexts"] and report["unreachable"] == []
    assert [(r["context"], r["status"]) for r in report["containers"] if r["name"] == name] == [(remote_host.context, "running")]


def test_cp_both_ways_through_the_remote(remote, tmp_path):
    cai, _, workspace, _, _ = remote
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "deep.txt").write_text("deep\n")
    (tree / "link").symlink_to("sub/deep.txt")
    sent = cai("cp", str(tree), ":sent", cwd=str(workspace))
    assert sent.returncode == 0, sent.stderr
    done = cai("exec", "-w", str(workspace), "--", "sh", "-c", "cat sent/link; stat -c %U sent/sub/deep.txt")
    assert (done.returncode, done.stdout) == (0, "deep\nagent\n"), done.stderr
    back = tmp_path / "back"
    got = cai("cp", ":sent", str(back), cwd=str(workspace))
    assert got.returncode == 0, got.stderr
    assert (back / "sub" / "deep.txt").read_text() == "deep\n" and os.readlink(back / "link") == "sub/deep.txt"


# --- --remote-path: a checkout the engine host already has --------------------------------------


def test_remote_path_binds_the_engine_hosts_directory(remote, remote_host, tmp_path_factory):
    cai, _, _, _, _ = remote
    # /tmp is the remote host's own (a tmpfs in its mount namespace): this host has no such path.
    made = remote_host.ssh("mkdir -p /tmp/checkout && echo engine-side > /tmp/checkout/only-there.txt"
                           " && chown -R 1000:1000 /tmp/checkout")  # one string: ssh joins its words
    assert made.returncode == 0, made.stderr
    workspace = agent_workspace(tmp_path_factory, "remote-path-ws")
    (workspace / "local.txt").write_text("stays here\n")
    done = cai("run", "--no-agent", "--remote-path", "/tmp/checkout", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    mounts = {m["Destination"]: m for m in remote_host.client.containers.get(name).attrs["Mounts"]}
    assert (mounts["/home/agent/workspace"]["Type"], mounts["/home/agent/workspace"]["Source"]) == ("bind", "/tmp/checkout")
    seen = cai("exec", "-w", str(workspace), "--", "sh", "-c", "ls; echo made > by-agent.txt")
    assert (seen.returncode, seen.stdout) == (0, "only-there.txt\n"), seen.stderr  # nothing was uploaded
    assert remote_host.ssh("cat", "/tmp/checkout/by-agent.txt").stdout == "made\n"
    status = cai("status", "--container", name)
    assert "  Workspace: /tmp/checkout (on the engine host)" in status.stdout.splitlines(), status.stdout
    report = json.loads(cai("status", "--container", name, "--json").stdout)
    assert report["workspace"] == {"path": str(workspace), "mount": "bind", "source": "/tmp/checkout", "copy": False}
    # The same path, spelled as a shell completes it, is the same; another one names what it has.
    again = cai("exec", "--remote-path", "/tmp//checkout/", "-w", str(workspace), "--", "true")
    assert again.returncode == 0, again.stderr
    other = cai("run", "--no-agent", "--remote-path", "/tmp/elsewhere", str(workspace))
    assert other.returncode == 1
    assert other.stderr.splitlines() == [
        f"[ERROR] Container {name} has another workspace: /tmp/checkout (on the engine host)",
        "[HINT] Recreate it with --fresh to bind the remote path"]


@pytest.mark.parametrize("path", ["/tmp/no-such-checkout", "/tmp/a-file-not-a-checkout"])
def test_a_remote_path_that_is_no_directory_is_refused_and_nothing_is_made(path, remote, remote_host, tmp_path_factory):
    cai, _, workspace, _, _ = remote
    assert remote_host.ssh("echo x > /tmp/a-file-not-a-checkout").returncode == 0
    fresh = agent_workspace(tmp_path_factory, "remote-path-missing")
    before = {c.id for c in remote_host.client.containers.list(all=True)}
    refusal = [f"[ERROR] Not a directory on the engine host of context {remote_host.context}: {path}",
               "[HINT] --remote-path names a directory that already exists there"]
    done = cai("run", "--no-agent", "--remote-path", path, str(fresh))
    assert (done.returncode, done.stderr.splitlines()) == (1, refusal)
    # --fresh checks before it removes: the existing container is still there, and works.
    kept = cai("run", "--no-agent", "--fresh", "--remote-path", path, str(workspace))
    assert (kept.returncode, kept.stderr.splitlines()[-2:]) == (1, refusal)
    assert {c.id for c in remote_host.client.containers.list(all=True)} == before
    assert cai("exec", "-w", str(workspace), "--", "true").returncode == 0
    assert remote_host.ssh("test -e /tmp/no-such-checkout").returncode == 1  # docker made no empty directory


def test_remote_path_needs_a_remote_engine(cai, tmp_path):
    done = cai("run", "--dry-run", "--remote-path", "/srv/checkout", str(tmp_path))
    assert done.code == 1
    assert done.err_lines == [
        "[ERROR] --remote-path needs a remote engine; context default is on this host",
        "[HINT] Give the local directory as the workspace instead"]


def test_dry_run_names_the_workspace_copy_on_a_remote_engine(remote, tmp_path_factory):
    cai, _, _, _, _ = remote
    workspace = agent_workspace(tmp_path_factory, "remote-dry")
    done = cai("run", "--dry-run", str(workspace))
    assert done.returncode == 0, done.stderr
    plan = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert plan["MOUNT_WORKSPACE"] == f"{plan['CONTAINER_NAME']}-workspace:/home/agent/workspace"
    bound = cai("run", "--dry-run", "--remote-path", "/tmp/x", str(workspace))
    assert dict(line.split("=", 1) for line in bound.stdout.splitlines())["MOUNT_WORKSPACE"] == "/tmp/x:/home/agent/workspace"


def test_agent_sessions_through_the_jump(remote, remote_host):
    cai, name, _, _, _ = remote
    check_session_through(cai, name, remote_host.client, "via-jump")


def test_status_resources_of_a_remote_container(remote, remote_host):
    """Read inside the container (its cgroup), not from this host: an idle container shows
    little, a busy loop shows, and the reading's own work is not counted."""
    cai, name, _, _, _ = remote

    def resources():
        done = cai("status", "--container", name, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["resources"]

    idle = resources()
    assert idle["cpu_percent"] < 10 and idle["memory_limit"] == "4GiB", idle
    container = remote_host.client.containers.get(name)
    container.exec_run(["sh", "-c", "while :; do :; done"], detach=True)
    try:
        assert wait_for(lambda: resources()["cpu_percent"] > 50, timeout=30)
    finally:
        container.exec_run(["pkill", "-f", "while :; do :; done"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signalled_exec_stops_its_remote_command_through_the_jump(remote, remote_host, signum):
    import sys

    _, name, workspace, home, env = remote
    context = remote_host.add_context(home)
    marker = f"jump-stop-{signum.name}"
    child = subprocess.Popen([sys.executable, "-m", "cai", "--context", context, "exec", "-w", str(workspace), "--",
                              "sh", "-c", f": {marker}; sleep 30"],
                             env={**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), **env},
                             stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    box = remote_host.client.containers.get(name)

    def left() -> str:
        found = box.exec_run(["pgrep", "-a", "-f", marker])
        return found.output.decode() if found.exit_code == 0 else ""

    deadline = time.monotonic() + 30
    while not left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left()
    child.send_signal(signum)
    _, err = child.communicate(timeout=15)
    assert child.returncode == 128 + signum, err
    deadline = time.monotonic() + 4
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left() == ""
