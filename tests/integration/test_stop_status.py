"""Session detection, `cai stop` and `cai status` against dockerd with real SSH and exec sessions."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import CAI, agent_workspace, run_cai, unique, wait_for


def state(docker_client, name):
    return docker_client.api.inspect_container(name)["State"]["Status"]


def status_json(home, name):
    done = run_cai(home, "status", "--container", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sessions_of(home, name):
    return status_json(home, name).get("sessions")


def sessions_once(home, name, key, value, timeout=10):
    """The sessions report, as soon as `key` reaches `value`."""
    return wait_for(lambda: (s := sessions_of(home, name))[key] == value and s, timeout=timeout)


class SshLogin:
    """A real login over ssh (through the config cai wrote), held open until closed."""

    def __init__(self, home, name):
        self.child = subprocess.Popen(["ssh", "-F", str(home / ".ssh" / "containai.d" / f"{name}.conf"), name, "sleep", "300"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self):
        self.child.kill()
        self.child.wait()


def exec_tty(docker_client, name, command=("sleep", "300")):
    """What `docker exec -t NAME sleep 300` leaves running: an exec session with a pty."""
    exec_id = docker_client.api.exec_create(name, list(command), tty=True)["Id"]
    docker_client.api.exec_start(exec_id, detach=True, tty=True)
    return exec_id


def end_sleeps(docker_client, name):
    docker_client.api.exec_start(docker_client.api.exec_create(name, ["pkill", "-x", "sleep"])["Id"])


# --- session detection -----------------------------------------------------------------------


def test_session_counts_follow_real_sessions(ws, home, docker_client):
    _, name = ws
    assert sessions_of(home, name) == {"state": "none", "ssh_connections": 0, "active_terminals": 0, "exec_sessions": 0,
                                         "detached_sessions": []}

    login = SshLogin(home, name)
    try:
        got = sessions_once(home, name, "ssh_connections", 1, timeout=20)
        assert got["state"] == "has"
    finally:
        login.close()
    sessions_once(home, name, "ssh_connections", 0, timeout=20)

    exec_tty(docker_client, name)
    got = sessions_once(home, name, "exec_sessions", 1)
    assert got == {"state": "has", "ssh_connections": 0, "active_terminals": 1, "exec_sessions": 1,
                   "detached_sessions": []}
    exec_tty(docker_client, name)
    got = sessions_once(home, name, "exec_sessions", 2)
    assert got == {"state": "has", "ssh_connections": 0, "active_terminals": 2, "exec_sessions": 2,
                   "detached_sessions": []}
    end_sleeps(docker_client, name)
    sessions_once(home, name, "state", "none")


def test_pty_threshold_counts_terminals_held_without_a_session(ws, home, docker_client):
    """A pty held in the background (no ssh, no running exec): one is not a session, two are."""
    _, name = ws
    hold = ["setsid", "-f", "script", "-qfc", "sleep 300", "/dev/null"]
    try:
        docker_client.api.exec_start(docker_client.api.exec_create(name, hold)["Id"])
        got = sessions_once(home, name, "active_terminals", 1)
        assert (got["state"], got["exec_sessions"], got["ssh_connections"]) == ("none", 0, 0)
        docker_client.api.exec_start(docker_client.api.exec_create(name, hold)["Id"])
        got = sessions_once(home, name, "active_terminals", 2)
        assert got["state"] == "has"
    finally:
        docker_client.api.exec_start(docker_client.api.exec_create(name, ["pkill", "-x", "script"])["Id"])
        end_sleeps(docker_client, name)


def test_ssh_connections_are_read_from_proc_when_ss_is_missing(fresh, home, docker_client):
    _, name = fresh()
    ss_path = docker_client.containers.get(name).exec_run(["sh", "-c", "command -v ss"]).output.decode().strip()
    assert ss_path
    docker_client.containers.get(name).exec_run(["mv", ss_path, ss_path + ".hidden"])
    login = SshLogin(home, name)
    try:
        got = sessions_once(home, name, "ssh_connections", 1, timeout=20)
        assert got["state"] == "has"
    finally:
        login.close()


def test_status_of_a_paused_container_leaves_sessions_out(fresh, home, docker_client):
    _, name = fresh()
    docker_client.api.pause(name)
    try:
        report = status_json(home, name)
        assert (report["status"], report.get("sessions")) == ("paused", None)
    finally:
        docker_client.api.unpause(name)


# --- cai status ------------------------------------------------------------------------------


def test_status_text_of_a_running_container(ws, home):
    workspace, name = ws
    started = time.monotonic()
    done = run_cai(home, "status", "-w", str(workspace))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"Container: {name}", "  Status: running"]
    assert lines[2].startswith("  Uptime: ") and lines[2].endswith("m")
    assert lines[3:7] == ["  Image: containai:latest", f"  Workspace: {workspace}", "", "  Sessions (best-effort):"]
    assert lines[7:10] == ["    SSH connections: 0", "    Active terminals: 0", "    Exec sessions: 0"]
    assert lines[10:12] == ["", "  Resource Usage:"]
    assert lines[12].startswith("    Memory: ") and lines[12].endswith("%)") and " / 4GiB (" in lines[12]
    assert lines[13].startswith("    CPU: ") and lines[13].endswith("%")
    assert took < 5  # the budget; bench/ measures the real figure


def test_status_json_keys_of_a_running_container(ws, home):
    _, name = ws
    report = status_json(home, name)
    assert list(report) == ["schema_version", "container", "status", "image", "uptime", "uptime_seconds", "workspace",
                            "sessions", "resources", "agent"]
    assert report["agent"] is None  # cai run started no agent there
    assert report["schema_version"] == 2 and isinstance(report["uptime_seconds"], int)
    assert report["workspace"] == {"path": str(ws[0]), "mount": "bind", "source": str(ws[0]), "copy": False}
    assert list(report["resources"]) == ["memory_usage", "memory_bytes", "memory_limit", "memory_limit_bytes",
                                         "memory_percent", "cpu_percent"]
    assert report["resources"]["memory_limit_bytes"] == 4 * 2**30
    assert report["resources"]["memory_limit"] == "4GiB"


def test_status_resources_follow_the_container(ws, home, docker_client):
    """CPU and memory as `docker stats` reports them: a busy loop shows, an idle container does not,
    and the probe's own work is not counted."""
    _, name = ws
    container = docker_client.containers.get(name)

    def resources():
        done = run_cai(home, "status", "--container", name, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["resources"]

    idle = resources()
    assert idle["cpu_percent"] < 10
    assert idle["memory_limit"] == "4GiB"
    engine_view = docker_client.api.stats(name, stream=False)["memory_stats"]["usage"]
    shown = float(idle["memory_usage"].rstrip("KMGiB")) * {"K": 2**10, "M": 2**20, "G": 2**30}[idle["memory_usage"][-3]]
    assert 0.5 * engine_view < shown < 1.5 * engine_view
    container.exec_run(["sh", "-c", "while :; do :; done"], detach=True)
    try:
        busy = wait_for(lambda: resources()["cpu_percent"] > 50, timeout=20)
        assert busy
        assert resources()["cpu_percent"] < 100 * (os.cpu_count() or 1) + 10
    finally:
        container.exec_run(["pkill", "-f", "while :; do :; done"])


def test_status_of_an_exited_container(fresh, home, docker_client):
    workspace, name = fresh()
    docker_client.api.stop(name)
    done = run_cai(home, "status", "-w", str(workspace))
    assert (done.returncode, done.stdout) == (
        0, f"Container: {name}\n  Status: exited\n  Image: containai:latest\n  Workspace: {workspace}\n")
    assert status_json(home, name) == {"schema_version": 2, "container": name, "status": "exited", "image": "containai:latest",
                                       "workspace": {"path": str(workspace), "mount": "bind", "source": str(workspace),
                                                     "copy": False}, "agent": None}


def test_status_of_a_created_container(make_container, home):
    c = make_container(start=False, labels={"containai.managed": "true"})
    # Made by hand: no workspace label and no workspace mount, so nothing to say of either.
    assert status_json(home, c.name) == {"schema_version": 2, "container": c.name, "status": "created", "image": "containai:latest",
                                         "workspace": {}, "agent": None}


def test_status_of_a_foreign_container(make_container, home):
    c = make_container(labels={"containai.managed": "false"})
    done = run_cai(home, "status", "--container", c.name)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"[ERROR] Container {c.name} exists but is not managed by ContainAI\n"


def test_status_of_a_missing_container(home, docker_client):
    name = unique()
    done = run_cai(home, "status", "--container", name)
    assert (done.returncode, done.stderr) == (1, f"[ERROR] Container not found: {name}\n")


def test_status_without_workspace_state(home, tmp_path):
    done = run_cai(home, "status", "--workspace", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"[ERROR] No container found for workspace: {tmp_path}",
                                        "Use 'cai status --container <name>' to specify a container"]


# --- cai stop --------------------------------------------------------------------------------


def test_stop_refuses_without_a_tty_when_sessions_are_open(fresh, home, docker_client):
    _, name = fresh()
    login = SshLogin(home, name)
    try:
        sessions_once(home, name, "ssh_connections", 1, timeout=20)
        done = run_cai(home, "stop", "--container", name)
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"[ERROR] Container '{name}' has active sessions (ssh: 1, terminals: 0, exec: 0)",
            f"Use --force to stop it anyway: cai stop --container {name} --force"]
        assert state(docker_client, name) == "running"

        forced = run_cai(home, "stop", "--container", name, "--force")
        assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "")
        assert state(docker_client, name) == "exited"
    finally:
        login.close()


def test_stop_without_sessions_uses_workspace_state(fresh, home, docker_client):
    workspace, name = fresh()
    done = run_cai(home, "--verbose", "stop", cwd=str(workspace))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"[INFO] Stopping: {name} [context: default]", "[OK] Done."]
    assert state(docker_client, name) == "exited"


def test_stop_remove_cleans_ssh_state(fresh, home, docker_client):
    _, name = fresh()
    alias = f"cai-default-{docker_client.api.inspect_container(name)['Id'][:12]} "
    known = home / ".config" / "containai" / "known_hosts"
    assert alias in known.read_text()
    done = run_cai(home, "stop", "--container", name, "--remove")
    assert done.returncode == 0, done.stderr
    assert not docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
    assert not (home / ".ssh" / "containai.d" / f"{name}.conf").exists()
    assert alias not in known.read_text()


@pytest.mark.parametrize(("keys", "code", "final"), [("n", 1, "running"), ("y", 0, "exited"), ("C-d", 0, "running")])
def test_stop_on_a_tty_asks_first(fresh, home, docker_client, tmux, keys, code, final):
    _, name = fresh()
    exec_tty(docker_client, name)
    sessions_once(home, name, "exec_sessions", 1)
    tmux.type(f"{CAI} stop --container {name}; echo \"rc=$?\"")
    tmux.wait_for_text(r"Stop anyway\? \[y/N\]")
    assert f"[WARN] Container '{name}' has active sessions (ssh: 0, terminals: 1, exec: 1)" in tmux.screen()
    if keys == "C-d":
        tmux.key("C-d")
    else:
        tmux.type(keys)
    tmux.wait_for_text(rf"^rc={code}$")
    if final == "running":
        assert "Cancelled." in tmux.screen()
    assert state(docker_client, name) == final


def test_picker_on_a_tty_stops_the_chosen_container(fresh, home, docker_client, tmux, tmp_path):
    _, name = fresh()
    listing = run_cai(home, "stop", cwd=str(tmp_path))  # no workspace state here: the list, then the TTY error
    assert listing.returncode == 1
    assert listing.stderr.splitlines() == ["", "[ERROR] Non-interactive terminal detected.",
                                           "Use --all flag to stop all containers without prompting:", "  cai stop --all"]
    rows = [line for line in listing.stdout.splitlines() if line.startswith("  ") and ") " in line]
    position = next(i for i, row in enumerate(rows) if row.split(") ", 1)[1].startswith(f"{name} ("))
    tmux.type(f"cd {tmp_path} && {CAI} stop; echo \"rc=$?\"")
    tmux.wait_for_text(r"Select containers to stop")
    for _ in range(position):
        tmux.key("Down")
    tmux.key("Space")
    tmux.key("Enter")
    tmux.wait_for_text(r"^rc=0$")
    assert state(docker_client, name) == "exited"


def test_stop_all_skips_containers_in_use(fresh, home, docker_client):
    """`--all` reaches every cai container on the engine: the ones running before are restarted."""
    busy_ws, busy = fresh()
    idle_ws, idle = fresh()
    running_before = [c.name for c in docker_client.containers.list(filters={"label": "containai.managed=true"})]
    exec_tty(docker_client, busy)
    sessions_once(home, busy, "exec_sessions", 1)
    try:
        done = run_cai(home, "stop", "--all")
        assert done.returncode == 1
        assert any(line.startswith(f"Skipping: {busy} (active sessions: ssh: 0, terminals: 1, exec: 1)")
                   for line in done.stdout.splitlines())
        assert f"Stopping: {idle}" in done.stdout.splitlines()
        assert done.stderr.splitlines()[0] == f"[ERROR] Skipped 1 container(s) with active sessions: {busy}"
        assert state(docker_client, busy) == "running"
        assert state(docker_client, idle) == "exited"
    finally:
        for name in running_before:
            if name not in (busy, idle):
                docker_client.api.start(name)
