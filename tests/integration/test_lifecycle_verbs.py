"""ps, logs, kill, restart, wait, port, inspect, top, pause, unpause and rename against the real
engine, with cai's resolution and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import AGENT_IMAGE, run_cai, unique, wait_for


def state(docker_client, name):
    return docker_client.api.inspect_container(name)["State"]["Status"]


def user_env(home):
    return {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}


@contextlib.contextmanager
def logged_in(home, workspace, name):
    """Someone inside: a `cai exec -- sleep` on a connection of its own, until the block ends."""
    login = subprocess.Popen([sys.executable, "-m", "cai", "exec", "-w", str(workspace), "--", "sleep", "120"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**user_env(home), "CAI_SSH_MULTIPLEX": "0"})
    try:
        wait_for(lambda: json.loads(run_cai(home, "status", "--container", name, "--json").stdout)
                 ["sessions"]["state"] == "has", timeout=30)
        yield
    finally:
        login.kill()
        login.wait()


# --- the target, and the codes every verb shares ------------------------------------------------

VERBS = [("logs",), ("kill",), ("restart",), ("wait",), ("port",), ("inspect",), ("top",), ("pause",), ("unpause",),
         ("rename", "cai-new-name")]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: v[0])
def test_a_missing_container_is_10(verb, home):
    name = unique()
    done = run_cai(home, verb[0], "--container", name, *verb[1:])
    assert (done.returncode, done.stderr.splitlines()[0]) == (10, f"[ERROR] Container not found: {name}")


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: v[0])
def test_a_foreign_container_is_15_and_untouched(verb, home, make_container, docker_client):
    foreign = make_container(labels={"containai.managed": "false"}, command=["sleep", "300"])
    done = run_cai(home, verb[0], "--container", foreign.name, *verb[1:])
    assert done.returncode == 15, done.stderr
    assert state(docker_client, foreign.name) == "running"
    assert docker_client.containers.get(foreign.id).name == foreign.name


def test_a_workspace_without_a_container_is_10(home, tmp_path):
    done = run_cai(home, "port", "-w", str(tmp_path))
    assert done.returncode == 10
    assert done.stderr.splitlines() == [f"[ERROR] No container for workspace: {tmp_path}", "Create one with: cai run"]


# --- port, inspect, top, logs (the shared running container) -----------------------------------


def test_port_text_and_json(ws, home, docker_client):
    workspace, name = ws
    port = docker_client.containers.get(name).labels["containai.ssh-port"]
    done = run_cai(home, "port", "-w", str(workspace))
    assert (done.returncode, done.stdout) == (0, f"22/tcp -> 127.0.0.1:{port}\n")
    report = json.loads(run_cai(home, "port", "--container", name, "--json").stdout)
    assert report["ports"] == [{"container_port": "22/tcp", "host_ip": "127.0.0.1", "host_port": int(port)}]


def test_inspect_adds_cais_view(ws, home, docker_client):
    workspace, name = ws
    assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0  # pins and NAME.conf exist
    done = run_cai(home, "inspect", "-w", str(workspace))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    found = docker_client.api.inspect_container(name)
    assert document["Id"] == found["Id"] and document["State"]["Status"] == "running"
    block = document["cai"]
    assert (block["context"], block["ssh_port"], block["pins"]) == ("default", int(found["Config"]["Labels"]["containai.ssh-port"]), "pinned")
    assert block["workspace"] == {"path": str(workspace), "mount": "bind", "source": str(workspace), "copy": False}
    assert block["ssh_config"].endswith(f"/.ssh/containai.d/{name}.conf") and block["sessions"]["state"] in ("none", "has")
    formatted = run_cai(home, "inspect", "--container", name, "--format", "{{.State.Status}} {{.cai.ssh_port}} {{.Nope}}")
    assert formatted.stdout == f"running {block['ssh_port']} <no value>\n"


def test_a_template_with_an_unsupported_action_is_refused_before_the_engine(home):
    done = run_cai(home, "--context", "nosuchcontext", "inspect", "--container", "x", "--format", "{{range .Mounts}}")
    assert done.returncode == 1
    assert done.stderr.startswith("[ERROR] Template parsing error: unsupported action {{range .Mounts}}"), done.stderr


def test_top_lists_the_containers_processes(ws, home):
    workspace, _ = ws
    done = run_cai(home, "top", "-w", str(workspace))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    assert any("sshd" in line for line in lines[1:]) and any("containai-init" in line for line in lines[1:])
    custom = run_cai(home, "top", "-w", str(workspace), "--", "-o", "pid,comm")
    assert custom.stdout.splitlines()[0].split() == ["PID", "COMMAND"], custom.stderr


def test_logs_keep_the_two_streams_and_take_tail_and_since(home, make_container):
    # Apart in time: two pipes, so lines written together may reach the log in either order.
    talker = make_container(labels={"containai.managed": "true"}, command=[
        "sh", "-c", "echo out-1; sleep 0.3; echo err-1 >&2; sleep 0.3; echo out-2; sleep 0.3; echo err-2 >&2; sleep 300"])
    wait_for(lambda: b"err-2" in talker.logs(stdout=False, stderr=True), timeout=10)
    done = run_cai(home, "logs", "--container", talker.name)
    assert (done.returncode, done.stdout, done.stderr) == (0, "out-1\nout-2\n", "err-1\nerr-2\n")
    # The last N lines of the log as a whole, as `docker logs --tail`, each to its own stream.
    tail = run_cai(home, "logs", "--container", talker.name, "--tail", "2")
    assert (tail.stdout, tail.stderr) == ("out-2\n", "err-2\n")
    future = run_cai(home, "logs", "--container", talker.name, "--since", "2099-01-01T00:00:00Z")
    assert (future.returncode, future.stdout, future.stderr) == (0, "", "")
    recent = run_cai(home, "logs", "--container", talker.name, "--since", "10m", "-t")
    assert recent.stdout.splitlines()[0].endswith(" out-1") and recent.stdout[:4].isdigit(), recent.stdout


def test_a_bad_since_is_refused_before_the_engine(home):
    done = run_cai(home, "--context", "nosuchcontext", "logs", "--container", "x", "--since", "yesterday")
    assert (done.returncode, done.stderr.splitlines()[0]) == (1, "[ERROR] Invalid --since value: yesterday")


def test_logs_follow_ends_when_the_container_stops(home, make_container, docker_client):
    talker = make_container(labels={"containai.managed": "true"}, command=[
        "sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"])
    follower = subprocess.Popen([sys.executable, "-m", "cai", "logs", "-f", "--container", talker.name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=user_env(home))
    try:
        wait_for(lambda: b"started" in talker.logs(), timeout=10)
        time.sleep(0.5)
        assert follower.poll() is None  # still following
        docker_client.api.stop(talker.id, timeout=5)
        out, err = follower.communicate(timeout=20)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert (follower.returncode, out, err) == (0, "started\nbye\n", "")


def test_logs_follow_ends_with_ctrl_c_as_success(home, make_container):
    talker = make_container(labels={"containai.managed": "true"}, command=["sh", "-c", "echo tick; sleep 300"])
    wait_for(lambda: b"tick" in talker.logs(), timeout=10)
    follower = subprocess.Popen([sys.executable, "-m", "cai", "logs", "-f", "--container", talker.name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=user_env(home))
    time.sleep(1.5)
    assert follower.poll() is None  # following
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=20)
    assert (follower.returncode, out) == (0, "tick\n"), err


# --- wait and kill ------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [(["true"], 0), (["sh", "-c", "exit 3"], 3)])
def test_wait_prints_the_exit_code_and_exits_with_it(command, code, home, make_container, docker_client):
    done_container = make_container(image=AGENT_IMAGE, labels={"containai.managed": "true"}, command=command)
    done = run_cai(home, "wait", "--container", done_container.name)
    assert (done.returncode, done.stdout, done.stderr) == (code, f"{code}\n", "")


def test_wait_blocks_until_kill_then_is_137(home, make_container, docker_client):
    sleeper = make_container(labels={"containai.managed": "true"}, command=["sleep", "300"])
    waiter = subprocess.Popen([sys.executable, "-m", "cai", "wait", "--container", sleeper.name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=user_env(home))
    try:
        time.sleep(1.5)
        assert waiter.poll() is None
        killed = run_cai(home, "kill", "--container", sleeper.name)
        assert (killed.returncode, killed.stdout) == (0, ""), killed.stderr
        out, err = waiter.communicate(timeout=20)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert (waiter.returncode, out) == (137, "137\n"), err
    assert state(docker_client, sleeper.name) == "exited"


@pytest.mark.parametrize("word", ["NOPE", "SIGNOPE", "0", "99999", "-9", "１５"])
def test_an_invalid_signal_is_refused_before_the_engine(word, home):
    done = run_cai(home, "--context", "nosuchcontext", "kill", "-s", word, "--container", "x")
    assert (done.returncode, done.stderr.splitlines()[0]) == (1, f"[ERROR] Invalid signal: {word}")


def test_a_signal_that_ends_the_init_follows_the_session_rules_too(fresh, home, docker_client):
    workspace, name = fresh()
    with logged_in(home, workspace, name):
        done = run_cai(home, "kill", "-s", "INT", "--container", name)  # containai-init ends on INT
        assert done.returncode == 1 and "has active sessions" in done.stderr, done.stderr
        assert state(docker_client, name) == "running"
        harmless = run_cai(home, "kill", "-s", "WINCH", "--container", name)
        assert harmless.returncode == 0, harmless.stderr


def test_a_gentle_signal_goes_straight_through(home, make_container, docker_client):
    trapper = make_container(labels={"containai.managed": "true"}, command=[
        "sh", "-c", "trap 'echo got-usr1' USR1; while :; do sleep 0.1; done"])
    time.sleep(0.5)
    done = run_cai(home, "kill", "-s", "usr1", "--container", trapper.name)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: b"got-usr1" in trapper.logs(), timeout=10)
    assert state(docker_client, trapper.name) == "running"


def test_kill_and_restart_follow_the_session_rules(fresh, home, docker_client):
    workspace, name = fresh()
    with logged_in(home, workspace, name):
        for argv, hint in ((["kill", "-s", "TERM"], "kill -s TERM"), (["restart"], "restart")):
            done = run_cai(home, *argv, "--container", name)
            assert done.returncode == 1, done.stderr
            lines = done.stderr.splitlines()
            assert lines[0].startswith(f"[ERROR] Container '{name}' has active sessions (ssh: 1"), done.stderr
            assert lines[1] == f"Use --force to {argv[0]} it anyway: cai {hint} --container {name} --force"
            assert state(docker_client, name) == "running"
        forced = run_cai(home, "kill", "--force", "--container", name)
        assert forced.returncode == 0, forced.stderr
        assert state(docker_client, name) == "exited"


# --- restart, pause, rename ---------------------------------------------------------------------


def test_restart_comes_back_with_ssh_and_the_same_pins(fresh, home, docker_client):
    workspace, name = fresh()
    known = home / ".config" / "containai" / "known_hosts"
    assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0
    pins = known.read_text()
    before = docker_client.api.inspect_container(name)["State"]["StartedAt"]
    done = run_cai(home, "restart", "-w", str(workspace), "-t", "2")
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert docker_client.api.inspect_container(name)["State"]["StartedAt"] != before
    again = run_cai(home, "exec", "-w", str(workspace), "--", "echo", "back")
    assert (again.returncode, again.stdout) == (0, "back\n"), again.stderr
    assert known.read_text() == pins


def test_pause_shows_in_status_and_ps_and_unpause_thaws(fresh, home, docker_client):
    workspace, name = fresh()
    assert run_cai(home, "pause", "-w", str(workspace)).returncode == 0
    try:
        assert state(docker_client, name) == "paused"
        assert json.loads(run_cai(home, "status", "--container", name, "--json").stdout)["status"] == "paused"
        listed = run_cai(home, "ps", "--format", "{{.Name}} {{.State}}")  # not stopped: listed by default
        assert f"{name} paused" in listed.stdout.splitlines(), listed.stdout
        refused = run_cai(home, "exec", "-w", str(workspace), "--", "true", env={"CAI_SSH_MULTIPLEX": "0"})
        assert (refused.returncode, refused.stderr.splitlines()[0]) == (11, f"[ERROR] Container {name} is paused")
    finally:
        assert run_cai(home, "unpause", "-w", str(workspace)).returncode == 0
    assert state(docker_client, name) == "running"
    done = run_cai(home, "exec", "-w", str(workspace), "--", "echo", "thawed")
    assert (done.returncode, done.stdout) == (0, "thawed\n"), done.stderr


def test_stop_all_leaves_a_paused_container_alone(spare_engine, tmp_path):
    """On an engine of the test's own: `stop --all` stops every cai container it does not skip."""
    spare = spare_engine(6)
    spare.reset()
    home = tmp_path / "home"
    context = spare.add_context(home)
    frozen = spare.make("paused", name="frozen")
    idle = spare.make("running", name="idle")
    done = run_cai(home, "--context", context, "stop", "--all", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Skipping: frozen (paused; cai unpause --container frozen first)" in done.stdout.splitlines(), done.stdout
    for container, status in ((frozen, "paused"), (idle, "exited")):
        container.reload()
        assert container.status == status, container.name


def test_rename_carries_ssh_state_and_caches(fresh, home, docker_client):
    workspace, name = fresh()
    new_name = unique("cai-renamed")
    assert run_cai(home, "exec", "-w", str(workspace), "--", "true").returncode == 0  # warm reach cache and master
    try:
        done = run_cai(home, "rename", "-w", str(workspace), new_name)
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        assert docker_client.containers.get(new_name).id
        conf_dir = home / ".ssh" / "containai.d"
        assert (conf_dir / f"{new_name}.conf").exists() and not (conf_dir / f"{name}.conf").exists()
        again = run_cai(home, "exec", "-w", str(workspace), "--", "echo", "renamed")
        assert (again.returncode, again.stdout) == (0, "renamed\n"), again.stderr
        user_config = home / "rename-ssh-config"  # OpenSSH's ~ is the passwd home, not the test's HOME
        user_config.write_text(f"Include {conf_dir}/*.conf\n")
        plain = subprocess.run(["/usr/bin/ssh", "-F", str(user_config), new_name, "id", "-un"],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                               env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
        assert (plain.returncode, plain.stdout) == (0, "agent\n"), plain.stderr
        status = run_cai(home, "status", "-w", str(workspace), "--json")
        assert json.loads(status.stdout)["container"] == new_name
        assert name not in run_cai(home, "ps", "-q").stdout.split()
    finally:
        try:
            docker_client.api.remove_container(new_name, force=True)
        except Exception:  # noqa: BLE001 - not renamed
            pass


def test_rename_refuses_a_name_that_is_taken(fresh, home, make_container, docker_client):
    _, name = fresh()
    other = make_container(start=False)
    done = run_cai(home, "rename", "--container", name, other.name)
    assert done.returncode == 1
    assert f"[ERROR] Container name {other.name} is taken (context: default)" in done.stderr.splitlines(), done.stderr
    assert docker_client.containers.get(name).name == name


# --- ps -----------------------------------------------------------------------------------------


def test_ps_lists_running_ones_by_default_and_everything_with_a(fresh, home, docker_client, ws):
    _, stopped = fresh()
    docker_client.api.stop(stopped, timeout=1)
    _, running = ws
    names = run_cai(home, "ps", "-q").stdout.split()
    assert running in names and stopped not in names
    everything = run_cai(home, "ps", "-a", "-q").stdout.split()
    assert {running, stopped} <= set(everything)
    rows = {row["name"]: row for row in json.loads(run_cai(home, "ps", "-a", "--format", "json").stdout)["containers"]}
    assert rows[running]["state"] == "running" and isinstance(rows[running]["uptime_seconds"], int)
    assert rows[running]["sessions"]["state"] in ("none", "has")
    assert rows[stopped]["state"] == "exited" and rows[stopped]["sessions"] is None
    assert isinstance(rows[stopped]["age_seconds"], int)
    table = run_cai(home, "ps", "-a").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "WORKSPACE", "IMAGE", "SSH", "PORT", "UP", "/", "AGE", "SESSIONS", "AGENT"]
    assert any(line.startswith(f"{stopped} ") and " exited " in line for line in table)


def test_ps_filters_and_templates(ws, home):
    workspace, name = ws
    by_workspace = run_cai(home, "ps", "--filter", f"workspace={workspace}", "--format", "{{.Name}}\\t{{.Port}}")
    assert by_workspace.returncode == 0, by_workspace.stderr
    (line,) = by_workspace.stdout.splitlines()
    assert line.split("\t")[0] == name and line.split("\t")[1].isdigit()
    assert run_cai(home, "ps", "--filter", "label=containai.nope", "-q").stdout == ""
    for bad, says in (("--filter", "colour=red"), ("--filter", "status=sleeping"), ("--format", "{{.Nope}}")):
        done = run_cai(home, "--context", "nosuchcontext", "ps", bad, says)
        assert done.returncode == 1 and done.stderr.startswith("[ERROR] "), done.stderr
        assert "context" not in done.stderr.splitlines()[0].lower()  # refused before any engine call


# --- run's and exec's new options ---------------------------------------------------------------


def test_run_labels_env_and_restart_policy(tmp_path_factory, home, docker_client):
    from conftest import agent_workspace

    workspace = agent_workspace(tmp_path_factory, "run-options")
    done = run_cai(home, "run", "--no-agent", "--label", "team=agents", "-e", "GREETING=hello world", "-e", "QUOTE=it's",
                   "--restart", "on-failure:3", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    try:
        found = docker_client.api.inspect_container(name)
        assert found["Config"]["Labels"]["team"] == "agents"
        assert json.loads(found["Config"]["Labels"]["containai.env"]) == {"GREETING": "hello world", "QUOTE": "it's"}
        assert found["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        said = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", 'echo "$GREETING|$QUOTE"')
        assert (said.returncode, said.stdout) == (0, "hello world|it's\n"), said.stderr
        assert run_cai(home, "restart", "-w", str(workspace), "-t", "1").returncode == 0
        again = run_cai(home, "exec", "-w", str(workspace), "--", "sh", "-c", 'echo "$GREETING"')
        assert again.stdout == "hello world\n", again.stderr
        listed = run_cai(home, "ps", "--filter", "label=team=agents", "-q")
        assert listed.stdout.split() == [name]
    finally:
        docker_client.api.remove_container(name, force=True)


@pytest.mark.parametrize(("argv", "says"), [
    (["--label", "containai.managed=false"], "[ERROR] Label containai.managed is reserved"),
    (["-e", "1BAD=x"], "[ERROR] Invalid --env value: 1BAD=x (use NAME=VALUE)"),
    (["--restart", "sometimes"], "[ERROR] Invalid --restart value: sometimes"),
    (["--restart", "always:3"], "[ERROR] Invalid --restart value: always:3"),
])
def test_run_refuses_bad_options_before_the_engine(argv, says, home, tmp_path):
    done = run_cai(home, "--context", "nosuchcontext", "run", *argv, str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith(says), done.stderr


def test_exec_user_env_and_workdir(ws, home):
    workspace, _ = ws
    (workspace / "sub dir").mkdir(exist_ok=True)
    done = run_cai(home, "exec", "-w", str(workspace), "-e", "A=1", "-e", "B=two words", "--workdir", "sub dir", "--",
                   "sh", "-c", 'echo "$A $B"; pwd; id -un')
    assert (done.returncode, done.stdout) == (0, "1 two words\n/home/agent/workspace/sub dir\nagent\n"), done.stderr
    root = run_cai(home, "exec", "-w", str(workspace), "-u", "root", "-e", "A=1", "--workdir", "/tmp", "--",
                   "sh", "-c", 'echo "$A"; pwd; id -un; exit 7')
    assert (root.returncode, root.stdout) == (7, "1\n/tmp\nroot\n"), root.stderr
    # Root does not start in the agent's workspace, where the agent could have planted what it runs.
    planted = run_cai(home, "exec", "-w", str(workspace), "-u", "root", "--", "pwd")
    assert (planted.returncode, planted.stdout) == (0, "/\n"), planted.stderr
    missing = run_cai(home, "exec", "-w", str(workspace), "--workdir", "no-such-dir", "--", "true")
    assert missing.returncode == 1 and "no-such-dir" in missing.stderr
