"""`cai run` / `cai exec` / `cai shell` against dockerd and a real sshd, with exact exit codes."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import RecordingProxy, agent_workspace, run_cai, unique, wait_for


@pytest.fixture(scope="module", autouse=True, params=["shared", "unshared"])
def connection_sharing(request):
    """Every test here runs twice: with the shared-connection fast path (the default) and without."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAI_SSH_MULTIPLEX", "1" if request.param == "shared" else "0")
        yield request.param


def test_run_creates_labelled_container(ws, docker_client, home):
    workspace, name = ws
    attrs = docker_client.api.inspect_container(name)
    got = attrs["Config"]["Labels"]
    assert got["containai.managed"] == "true"
    assert got["containai.workspace"] == str(workspace.resolve())
    assert 2300 <= int(got["containai.ssh-port"]) <= 2500
    assert got["containai.data-volume"] == "containai-data"
    binding = attrs["HostConfig"]["PortBindings"]["22/tcp"][0]
    assert binding == {"HostIp": "127.0.0.1", "HostPort": got["containai.ssh-port"]}
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/home/agent/workspace"]["Source"] == str(workspace.resolve())
    assert mounts["/mnt/agent-data"]["Name"] == "containai-data"
    key = home / ".config" / "containai" / "id_containai"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    # Pinned: exactly the container's own host keys, under an alias of the engine and the container.
    alias = f"cai-default-{attrs['Id'][:12]}"
    pinned = {line.split(" ", 1)[1] for line in (home / ".config" / "containai" / "known_hosts").read_text().splitlines()
              if line.startswith(alias + " ")}
    shown = docker_client.containers.get(name).exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).output.decode()
    assert pinned == {" ".join(line.split()[:2]) for line in shown.splitlines()}
    assert len(pinned) == 3
    assert (home / ".ssh" / "config").read_text().startswith("Include ~/.ssh/containai.d/*.conf\n")


def test_arguments_arrive_byte_identical(ws, home):
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "printf", "%s|", "a b", "it's", "$HOME", "*", "")
    assert (done.returncode, done.stdout) == (0, "a b|it's|$HOME|*||")


@pytest.mark.parametrize("code", [0, 1, 7, 42, 254])
def test_remote_exit_codes_pass_through(ws, home, code):
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", f"exit {code}")
    assert done.returncode == code
    assert done.stderr == ""


def test_remote_255_runs_once_and_returns_255(ws, home):
    workspace, _ = ws
    marker = f"runs-{unique()}"
    done = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", f"echo x >> {marker}; exit 255")
    assert done.returncode == 255
    assert (workspace / marker).read_text() == "x\n"
    assert "retrying" not in done.stderr


def test_streams_stay_separate_and_stdin_is_forwarded(ws, home):
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", "cat; echo to-err >&2", input="from-stdin\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "from-stdin\n", "to-err\n")


def test_command_starting_with_dash_is_a_command(ws, home):
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "--help")
    assert done.returncode == 127
    assert "--help: command not found" in done.stderr


def test_workdir_and_user(ws, home):
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", "pwd; id -un")
    assert done.stdout == "/home/agent/workspace\nagent\n"


def test_no_command(home, ws):
    done = run_cai(home, "exec", "-w", str(ws[0]))
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["[ERROR] No command specified", "Usage: cai exec [options] [--] <command> [args...]"]


def test_missing_named_container_is_10_and_not_created(home, docker_client):
    name = unique()
    done = run_cai(home, "exec", "--container", name, "--", "true")
    assert done.returncode == 10
    assert done.stderr.splitlines()[0] == f"[ERROR] Container not found: {name}"
    assert "cai run" in done.stderr
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})


def test_foreign_container_is_15(home, make_container):
    foreign = make_container(labels={"containai.managed": "false"})
    done = run_cai(home, "exec", "--container", foreign.name, "--", "true")
    assert done.returncode == 15
    assert done.stderr.splitlines() == [f"[ERROR] Container {foreign.name} exists but is not managed by ContainAI",
                                        "[HINT] Remove the conflicting container or use a different name"]


def test_start_failure_is_11(home, make_container):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        c = make_container(start=False, labels={"containai.managed": "true", "containai.ssh-port": str(port)},
                           ports={"22/tcp": ("127.0.0.1", port)})
        done = run_cai(home, "exec", "--container", c.name, "--", "true")
        assert done.returncode == 11, done.stderr
        assert done.stderr.splitlines()[0] == f"[ERROR] Failed to start container: {c.name}"
    finally:
        holder.close()


def test_no_port_label_is_12(home, make_container):
    c = make_container(labels={"containai.managed": "true"})
    done = run_cai(home, "exec", "--container", c.name, "--", "true")
    assert done.returncode == 12
    assert done.stderr.splitlines()[0] == "[ERROR] Container has no SSH port configured"


def test_transport_failure_after_retries_is_13(home, make_container):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    c = make_container(labels={"containai.managed": "true", "containai.ssh-port": str(port)})
    conf_dir = home / ".ssh" / "containai.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    # This container's own config (its alias), so cai goes straight to connecting.
    (conf_dir / f"{c.name}.conf").write_text(f"Host {c.name}\n    HostKeyAlias cai-default-{c.id[:12]}\n")
    done = run_cai(home, "exec", "--container", c.name, "--", "true")
    assert done.returncode == 13, done.stderr
    assert "[WARN] SSH connection failed, retrying (1/3)..." in done.stderr.splitlines()
    assert "[ERROR] SSH connection failed after 3 retries" in done.stderr.splitlines()


def test_changed_host_key_recovers_once(ws, home, docker_client):
    workspace, name = ws
    known = home / ".config" / "containai" / "known_hosts"
    original = known.read_text()
    bogus_dir = home / f"bogus-{unique()}"
    bogus_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(bogus_dir / "k")], check=True)
    bogus = (bogus_dir / "k.pub").read_text().split()[:2]
    lines = [l.split(" ")[0] + " " + " ".join(bogus) if l.split(" ")[1] == "ssh-ed25519" else l for l in original.splitlines()]
    known.write_text("\n".join(l for l in lines if "ssh-ed25519" in l) + "\n")
    done = run_cai(home, "exec", "-w", str(workspace), "--", "echo", "ok")
    assert (done.returncode, done.stdout) == (0, "ok\n")
    assert done.stderr.splitlines() == ["[WARN] SSH host keys changed, pinned them again from the engine..."]
    alias = f"cai-default-{docker_client.containers.get(name).id[:12]} "
    assert len([line for line in known.read_text().splitlines() if line.startswith(alias)]) == 3  # all of the engine's keys


def test_shell_propagates_exit_code(ws, home):
    workspace, _ = ws
    done = run_cai(home, "shell", str(workspace), input="exit 3\n")
    assert done.returncode == 3


def test_plain_ssh_with_written_config(ws, home):
    _, name = ws
    conf = home / ".ssh" / "containai.d" / f"{name}.conf"
    done = subprocess.run(["ssh", "-F", str(conf), name, "echo", "via-ssh"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, "via-ssh\n")


def test_parallel_first_exec_injects_one_key(tmp_path, docker_client, agent_image):
    home = tmp_path / "phome"
    home.mkdir()
    workspace = tmp_path / "pws"
    workspace.mkdir(mode=0o777)
    workspace.chmod(0o777)
    dry = run_cai(home, "run", "--dry-run", str(workspace))
    name = dict(l.split("=", 1) for l in dry.stdout.splitlines())["CONTAINER_NAME"]
    try:
        created = run_cai(home, "run", "--no-agent", str(workspace))
        assert created.returncode == 0, created.stderr
        # forget all client-side SSH state, so every exec below does a first-time setup
        for path in [home / ".ssh" / "containai.d" / f"{name}.conf", home / ".config" / "containai" / "known_hosts"]:
            path.unlink()
        container = docker_client.containers.get(name)
        container.exec_run(["sh", "-c", ": > /home/agent/.ssh/authorized_keys"])
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: run_cai(home, "exec", "-w", str(workspace), "--", "true"), range(20)))
        assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
        keys = container.exec_run(["cat", "/home/agent/.ssh/authorized_keys"]).output.decode().splitlines()
        assert len(keys) == 1
    finally:
        docker_client.api.remove_container(name, force=True)


def test_dry_run_changes_nothing(tmp_path, docker_client):
    workspace = tmp_path / "drydir"
    workspace.mkdir()
    before = {c.name for c in docker_client.containers.list(all=True)}
    done = run_cai(tmp_path, "run", "--dry-run", str(workspace))
    plan = dict(l.split("=", 1) for l in done.stdout.splitlines())
    assert done.returncode == 0
    assert plan["CONTAINER_NAME"] == "drydir-nogit" and plan["ACTION"] == "create" and plan["CONTAINER_STATE"] == "none"
    assert {c.name for c in docker_client.containers.list(all=True)} == before


def test_run_detached_prints_a_session_name_and_runs(ws, home):
    workspace, _ = ws
    marker = f"bg-{unique()}"
    done = run_cai(home, "run", str(workspace), "-d", "--", "sh", "-c", f"sleep 0.5; echo done > {marker}")
    assert done.returncode == 0, done.stderr
    session = done.stdout.strip()
    assert re.fullmatch(r"[a-z]+-[0-9]{2}", session), session  # not a PID: the original's was the wrong one
    waited = run_cai(home, "session", "wait", "-w", str(workspace), session, timeout=30)
    assert (waited.returncode, waited.stdout) == (0, "0\n"), waited.stderr
    assert (workspace / marker).read_text() == "done\n"


class RotatingKeyServer:
    """A real SSH server (paramiko) that shows a new host key on every connection, so a pinned key
    can never match, not even right after recovery re-pins it."""

    def __init__(self):
        import threading

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    @staticmethod
    def _handshake(conn):
        import paramiko

        transport = paramiko.Transport(conn)
        transport.add_server_key(paramiko.ECDSAKey.generate())
        try:
            transport.start_server(server=paramiko.ServerInterface())
            transport.accept(5)
        except Exception:  # noqa: BLE001 - clients hang up after the key exchange
            pass
        finally:
            transport.close()

    def close(self):
        self.listener.close()


def test_a_server_without_the_engines_host_key_is_14(tmp_path, make_container):
    """Something else answers on the container's port (here a paramiko server): its key is none
    of the keys the engine shows for the container, so nothing is pinned from it and exec is 14."""
    home = tmp_path / "h14"
    home.mkdir()
    server = RotatingKeyServer()
    try:
        c = make_container(labels={"containai.managed": "true", "containai.ssh-port": str(server.port)})
        done = run_cai(home, "exec", "--container", c.name, "--", "true")
    finally:
        server.close()
    assert done.returncode == 14, done.stderr
    assert done.stderr.splitlines()[0] == f"[ERROR] SSH host key mismatch: the server on port {server.port} is not container {c.name}"
    shown = c.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).output.decode()
    pinned = (home / ".config" / "containai" / "known_hosts").read_text()
    assert {" ".join(line.split()[1:3]) for line in pinned.splitlines()} == {" ".join(line.split()[:2]) for line in shown.splitlines()}


@pytest.mark.parametrize(("script", "code"), [("kill -TERM $$", 143), ("kill -KILL $$", 137), ("kill -INT $$", 130)])
def test_remote_signal_death_is_128_plus_n(ws, home, script, code):
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", script)
    assert (done.returncode, done.stderr) == (code, "")


def _cai_child(home, workspace, marker, **extra_env):
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), **extra_env}
    return subprocess.Popen([sys.executable, "-m", "cai", "exec", "-w", str(workspace), "--", "sh", "-c",
                             f"echo x >> {marker}; exec sleep 30"],
                            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _ssh_processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ssh") and any(text.encode() in a for a in argv):
            found.append(entry)
    return found


def test_ctrl_c_gives_130_and_never_reruns(ws, home, docker_client):
    workspace, name = ws
    marker = f"int-{unique()}"
    child = _cai_child(home, workspace, marker)
    wait_for(lambda: (workspace / marker).exists(), timeout=30)
    os.killpg(child.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    _, err = child.communicate(timeout=10)  # cai's pipes must not wait for the remote command
    docker_client.containers.get(name).exec_run(["pkill", "-f", marker])
    assert child.returncode == 130, err
    assert (workspace / marker).read_text() == "x\n"
    assert "retrying" not in err


def test_sigterm_to_cai_gives_143_and_takes_ssh_with_it(ws, home, docker_client):
    workspace, name = ws
    marker = f"term-{unique()}"
    child = _cai_child(home, workspace, marker)
    wait_for(lambda: (workspace / marker).exists(), timeout=30)
    assert _ssh_processes_mentioning(marker)
    child.send_signal(signal.SIGTERM)  # cai alone, as a supervisor would
    _, err = child.communicate(timeout=10)  # cai's pipes must not wait for the remote command
    docker_client.containers.get(name).exec_run(["pkill", "-f", marker])
    assert child.returncode == 143, err
    assert _ssh_processes_mentioning(marker) == []
    assert (workspace / marker).read_text() == "x\n"


def _remote_left(docker_client, name, marker) -> str:
    """What still runs in the container that names `marker`."""
    found = docker_client.containers.get(name).exec_run(["pgrep", "-a", "-f", marker])
    return found.output.decode() if found.exit_code == 0 else ""


@pytest.mark.parametrize("multiplex", ["1", "0"], ids=["shared", "own-connection"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signalled_exec_stops_its_remote_command_too(ws, home, docker_client, signum, multiplex):
    """A CI timeout or a systemd stop of `cai exec -- make test` must not leave the build running:
    without a PTY ssh carries no signal, so cai passes it on to the command's process group."""
    import time

    workspace, name = ws
    marker = f"stop-{unique()}"
    child = _cai_child(home, workspace, marker, CAI_SSH_MULTIPLEX=multiplex)
    wait_for(lambda: (workspace / marker).exists(), timeout=30)
    assert _remote_left(docker_client, name, marker)
    child.send_signal(signum)
    _, err = child.communicate(timeout=15)
    assert child.returncode == 128 + signum, err
    deadline = time.monotonic() + 3
    while _remote_left(docker_client, name, marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _remote_left(docker_client, name, marker) == ""


def test_ssh_cleanup_removes_only_gone_containers(ws, tmp_path):
    workspace, name = ws
    home = tmp_path / "hclean"
    home.mkdir()
    assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0
    conf_dir = home / ".ssh" / "containai.d"
    known = home / ".config" / "containai" / "known_hosts"
    gone = unique("gone")
    (conf_dir / f"{gone}.conf").write_text(f"# ContainAI SSH config for container: {gone}\nHost {gone}\n    Port 2499\n"
                                           "    HostKeyAlias cai-default-00000000dead\n")
    (conf_dir / "mine.conf").write_text("Host mine\n    Port 2498\n")  # not ours: left alone
    with known.open("a") as fh:
        fh.write("cai-default-00000000dead ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGone\n")

    dry = run_cai(home, "ssh", "cleanup", "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, f"Would remove: {gone} (port 2499)\n")
    assert (conf_dir / f"{gone}.conf").exists()

    done = run_cai(home, "ssh", "cleanup", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["schema_version"] == 1
    assert report["removed"] == [{"name": gone, "port": 2499}]
    assert report["kept"] == [name]
    assert sorted(p.name for p in conf_dir.iterdir()) == sorted([f"{name}.conf", "mine.conf"])
    assert "cai-default-00000000dead " not in known.read_text()
    assert len(known.read_text().splitlines()) == 3  # the live container's pins stay
    assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0


def test_ssh_cleanup_aborts_when_no_engine_answers(tmp_path):
    home = tmp_path / "hdead"
    conf_dir = home / ".ssh" / "containai.d"
    conf_dir.mkdir(parents=True)
    conf = conf_dir / "someone.conf"
    conf.write_text("# ContainAI SSH config for container: someone\nHost someone\n    Port 2400\n")
    env = {"CONTAINAI_SECURE_ENGINE_CONTEXT": None}
    subprocess.run(["docker", "context", "create", "dead", "--docker", f"host=unix://{tmp_path}/none.sock"],
                   check=True, capture_output=True, env={**os.environ, "DOCKER_CONFIG": str(home / ".docker")})
    done = run_cai(home, "--context", "dead", "ssh", "cleanup", env={k: v for k, v in env.items() if v})
    assert done.returncode == 1
    assert "[ERROR] No Docker daemon is reachable" in done.stderr.splitlines()
    assert conf.exists()


def test_same_named_workspaces_get_their_own_containers(tmp_path, docker_client, agent_image):
    """Two directories called `twin` (no git) share the base name twin-nogit; neither may take the other's."""
    home = tmp_path / "htwin"
    home.mkdir()
    names = []
    try:
        for parent in ("a", "b"):
            workspace = tmp_path / parent / "twin"
            workspace.mkdir(parents=True)
            workspace.chmod(0o777)
            done = run_cai(home, "run", "--no-agent", str(workspace))
            assert done.returncode == 0, done.stderr
            names.append(done.stdout.strip())
            labels = docker_client.api.inspect_container(names[-1])["Config"]["Labels"]
            assert labels["containai.workspace"] == str(workspace)
        assert names == ["twin-nogit", "twin-nogit-2"]
    finally:
        for name in names:
            docker_client.api.remove_container(name, force=True)


# --- the fast path ---------------------------------------------------------------------------


def control_socket(docker_client, name: str) -> Path:
    import zlib

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "cai" if runtime else Path(tempfile.gettempdir()) / f"cai-{os.getuid()}"
    container = docker_client.containers.get(name)
    alias = f"cai-default-{container.id[:12]}"
    digest = f"{zlib.crc32(alias.encode()):08x}{zlib.adler32(alias.encode()):08x}"
    return base / f"{digest}-{container.labels['containai.ssh-port']}"


def test_a_repeat_exec_asks_the_engine_nothing(ws, home, tmp_path, connection_sharing):
    """Through a context whose every request is recorded: the first exec asks the engine, the
    next ones go straight to the shared connection."""
    workspace, name = ws
    proxy = RecordingProxy(tmp_path / "engine.sock")
    try:
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
        subprocess.run(["docker", "context", "rm", "-f", "recorded"], env=env, capture_output=True, timeout=30)
        subprocess.run(["docker", "context", "create", "recorded", "--docker", f"host=unix://{proxy.path}"],
                       env=env, check=True, capture_output=True, timeout=30)
        first = run_cai(home, "--context", "recorded", "exec", "-w", str(workspace), "--", "echo", "one")
        assert (first.returncode, first.stdout) == (0, "one\n"), first.stderr
        asked = len(proxy.sent)
        assert asked > 0
        for word in ("two", "three"):
            again = run_cai(home, "--context", "recorded", "exec", "-w", str(workspace), "--", "echo", word)
            assert (again.returncode, again.stdout) == (0, f"{word}\n"), again.stderr
        if connection_sharing == "shared":
            assert len(proxy.sent) == asked
        else:
            assert len(proxy.sent) > asked
    finally:
        proxy.close()


def test_a_stopped_container_is_started_again_from_a_warm_cache(home, tmp_path_factory, docker_client, connection_sharing):
    workspace = agent_workspace(tmp_path_factory, "fast-stopped")
    name = run_cai(home, "run", "--no-agent", str(workspace)).stdout.strip()
    try:
        assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0
        socket_path = control_socket(docker_client, name)
        if connection_sharing == "shared":
            assert socket_path.exists()
        docker_client.containers.get(name).stop(timeout=1)
        wait_for(lambda: not socket_path.exists(), timeout=10)  # the master ends with the connection
        done = run_cai(home, "exec", "-w", str(workspace), "--", "echo", "back")
        assert (done.returncode, done.stdout) == (0, "back\n"), done.stderr
        assert docker_client.containers.get(name).status == "running"
    finally:
        docker_client.api.remove_container(name, force=True)


def test_a_recreated_container_is_never_confused_with_the_old_one(home, tmp_path_factory, docker_client):
    workspace = agent_workspace(tmp_path_factory, "fast-fresh")
    name = run_cai(home, "run", "--no-agent", str(workspace)).stdout.strip()
    try:
        assert run_cai(home, "exec", "-w", str(workspace), "--", "touch", "/tmp/old-one").returncode == 0
        old_id = docker_client.containers.get(name).id
        assert run_cai(home, "run", "--no-agent", "--fresh", str(workspace)).returncode == 0
        assert docker_client.containers.get(name).id != old_id
        done = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", "test -e /tmp/old-one; echo $?")
        assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
    finally:
        docker_client.api.remove_container(name, force=True)


def test_stop_is_not_refused_for_cais_own_idle_connection(home, tmp_path_factory, docker_client, connection_sharing):
    workspace = agent_workspace(tmp_path_factory, "fast-stop")
    name = run_cai(home, "run", "--no-agent", str(workspace)).stdout.strip()
    try:
        assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0
        status = json.loads(run_cai(home, "status", "--container", name, "--json").stdout)
        assert status["sessions"]["ssh_connections"] == 0
        done = run_cai(home, "stop", "--container", name)
        assert done.returncode == 0, done.stderr
        assert docker_client.containers.get(name).status == "exited"
        assert not control_socket(docker_client, name).exists()
    finally:
        docker_client.api.remove_container(name, force=True)


def test_a_command_too_long_for_one_argument_is_a_clear_error(ws, home):
    """ssh takes the remote command as one argument (Linux: 128 KiB); 1 MB of words is rc 1 with a
    hint, not an unexpected OSError."""
    workspace, _ = ws
    done = run_cai(home, "exec", "-w", str(workspace), "--", "echo", *(["x" * 100] * 10_000))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("[ERROR] The command is too long to send (") and "Traceback" not in done.stderr
    assert "Unexpected error" not in done.stderr
