"""Agent sessions (`cai session`, `cai attach`, `cai run -d`) against the real engine, sshd and
tmux in the agent image: exit codes kept, logs, a REPL driven by send, several clients, a killed
client, stop refused while one runs (also when the probe fails), lost after a stop, records an
agent tampered with, and a second container on the same data volume playing the neighbour."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import AGENT_IMAGE, CAI, RUN_ID, RUN_LABEL, Tmux, agent_workspace, run_cai, unique, wait_for

SESSIONS = "/home/agent/.cai-sessions"
LEGACY = "/mnt/agent-data/sessions"  # where records were, shared by every container on the volume


@pytest.fixture(scope="module")
def box(tmp_path_factory, home, docker_client, agent_image):
    """A container of its own: these tests stop it and fill its session records."""
    workspace = agent_workspace(tmp_path_factory, "sessions-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    yield workspace, name
    docker_client.api.remove_container(name, force=True)


@pytest.fixture(scope="module")
def neighbour(box, docker_client):
    """Another container on the box's data volume, as its agent (uid 1000): the second attacker."""
    volume = next(m["Name"] for m in docker_client.containers.get(box[1]).attrs["Mounts"]
                  if m["Destination"] == "/mnt/agent-data")
    container = docker_client.containers.run(
        AGENT_IMAGE, ["sleep", "900"], entrypoint=[], user="1000:1000", detach=True, name=unique("neighbour"),
        labels={RUN_LABEL: RUN_ID}, volumes={volume: {"bind": "/mnt/agent-data", "mode": "rw"}})
    yield container
    container.remove(force=True)


def as_neighbour(neighbour, script):
    done = neighbour.exec_run(["sh", "-c", script])
    assert done.exit_code == 0, done.output
    return done.output.decode()


def checkout(workspace):
    """Every file of the user's checkout and its bytes' hash, links as links."""
    return {str(path.relative_to(workspace)): os.readlink(path) if path.is_symlink() else
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(workspace.rglob("*"))}


def on_terminal(home, box, *argv, stderr_too=False):
    """cai with a pty as its stdout (and stderr with `stderr_too`; stdin is not): what a terminal
    would receive."""
    master, slave = pty.openpty()
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    env.pop("XDG_CONFIG_HOME", None)
    child = subprocess.Popen([*CAI.split(), argv[0], argv[1], "--container", box[1], *argv[2:]],
                             stdin=subprocess.DEVNULL, stdout=slave, stderr=slave if stderr_too else subprocess.PIPE,
                             env=env)
    os.close(slave)
    received = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            received += chunk
        elif child.poll() is not None:
            break
    os.close(master)
    assert child.wait(timeout=30) == 0, child.stderr.read() if child.stderr else received
    return received.replace(b"\r\n", b"\n")


def cai(home, box, *argv, **kwargs):
    _, name = box
    return run_cai(home, *argv[:2], "--container", name, *argv[2:], **kwargs) if argv[0] == "session" \
        else run_cai(home, argv[0], "--container", name, *argv[1:], **kwargs)


def new(home, box, *argv):
    done = cai(home, box, "session", "new", *argv)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def listed(home, box, *flags):
    done = cai(home, box, "session", "ls", "--json", *flags)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema_version"] == 1
    return {s["name"]: s for s in document["sessions"]}


def legacy_dir(docker_client, name):
    return f"{LEGACY}/{docker_client.containers.get(name).id[:12]}"


def as_agent(docker_client, name, script):
    done = docker_client.containers.get(name).exec_run(["sh", "-c", script], user="agent")
    assert done.exit_code == 0, done.output
    return done.output.decode()


@pytest.mark.parametrize(("command", "signal", "code"), [
    ("true", None, 0),
    ("exit 7", None, 7),
    ("sleep 300", "TERM", 143),
    ("sleep 300", "9", 137),
    ("sleep 300", "INT", 130),  # the wrapper's bash must not take the job's SIGINT for its own
    ("sleep 300", "QUIT", 131),
    ("sleep 300", "HUP", 129),
    ("sleep 300", "ABRT", 134),
    ("trap 'exit 5' USR1; sleep 300 & wait", "SIGUSR1", 5),
    ("kill -STOP $$; echo resumed; exit 3", None, 3),  # a stopped command is resumed, not ended
])
def test_wait_exits_with_the_commands_code(home, box, command, signal, code):
    session = new(home, box, "--", "bash", "-c", command)
    assert re.fullmatch(r"[a-z]+-[0-9]{2}", session), session
    if signal is not None:
        done = cai(home, box, "session", "kill", "-s", signal, session)
        assert done.returncode == 0, done.stderr
    done = cai(home, box, "session", "wait", session, timeout=30)
    assert (done.returncode, done.stdout) == (code, f"{code}\n"), done.stderr
    again = cai(home, box, "session", "wait", session)  # kept after the end
    assert (again.returncode, again.stdout) == (code, f"{code}\n")
    record = listed(home, box, "-a")[session]
    assert (record["state"], record["exit_code"], record["command"]) == ("exited", code, ["bash", "-c", command])


def test_a_taken_name_and_bad_names_are_refused(home, box, docker_client):
    name = unique("taken")
    assert new(home, box, name, "--", "sleep", "60") == name
    done = cai(home, box, "session", "new", name, "--", "true")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"[ERROR] Session name {name} is taken"
    for bad in ("../a", "a b", "a.b", "a:b", "x" * 41, "é", "a\nb"):
        done = cai(home, box, "session", "new", bad, "--", "true")
        assert done.returncode == 1 and "Invalid session name" in done.stderr, (bad, done.stderr)
    assert cai(home, box, "session", "new", "-x", "--", "true").returncode == 1
    files = as_agent(docker_client, box[1], f"ls -a {SESSIONS} {SESSIONS}/.records")
    assert not any(part in files for part in ("a b", "a.b", "../a", "é")), files
    assert cai(home, box, "session", "kill", "-s", "KILL", name).returncode == 0
    assert cai(home, box, "session", "kill", "-s", "STOP", name).returncode == 1  # refused before anything


def test_send_drives_a_repl_whose_log_is_the_containers_own(home, box, docker_client):
    session = new(home, box, "--log", "--", "python3", "-q")
    done = cai(home, box, "session", "send", session, "--", "print(6*7, 'x' * 3)")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: "42 xxx" in cai(home, box, "session", "logs", session).stdout, timeout=15)
    log = f"{SESSIONS}/{session}.log"
    assert listed(home, box)[session]["log"] == log
    owner = docker_client.containers.get(box[1]).exec_run(["stat", "-c", "%U %a", log, SESSIONS, f"{SESSIONS}/.records"])
    assert owner.output.decode().split("\n")[:3] == ["agent 644", "agent 700", "agent 700"]
    assert cai(home, box, "session", "send", session, "exit()").returncode == 0
    assert cai(home, box, "session", "wait", session, timeout=30).returncode == 0
    assert "42 xxx" in cai(home, box, "session", "logs", session, "--tail", "5").stdout
    done = cai(home, box, "session", "send", session, "print(1)")
    assert (done.returncode, done.stderr.splitlines()[0]) == (1, f"[ERROR] Session {session} is not running")


def test_logs_without_a_log_show_the_screen_and_follow_needs_a_log(home, box):
    session = new(home, box, "--", "bash", "-c", "echo one; echo two; sleep 300")
    wait_for(lambda: "two" in cai(home, box, "session", "logs", session).stdout, timeout=15)
    assert cai(home, box, "session", "logs", session).stdout == "one\ntwo\n"  # no blank rows below
    assert cai(home, box, "session", "logs", session, "--tail", "1").stdout == "two\n"
    done = cai(home, box, "session", "logs", session, "-f")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"[ERROR] Session {session} has no log to follow (it was started without --log)",
                                        f"Watch it read-only instead: cai attach -r {session}"]
    assert cai(home, box, "session", "kill", session).returncode == 0
    assert cai(home, box, "session", "wait", session).returncode == 143
    assert "two" in cai(home, box, "session", "logs", session).stdout  # the final screen


def test_follow_ends_with_the_session(home, box):
    session = new(home, box, "--log", "--", "bash", "-c", "for i in 1 2 3; do echo n$i; sleep 0.5; done")
    started = time.monotonic()
    done = cai(home, box, "session", "logs", session, "-f", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n1", "n2", "n3"]
    assert time.monotonic() - started < 15


def test_workdir_and_environment(home, box):
    workspace, _ = box
    (workspace / "sub").mkdir(exist_ok=True)
    (workspace / "sub").chmod(0o777)
    session = new(home, box, "--log", "--workdir", "sub", "-e", "GREETING=a b 'c'", "--",
                  "sh", "-c", 'pwd; printf "%s\\n" "$GREETING"')
    assert cai(home, box, "session", "wait", session).returncode == 0
    wait_for(lambda: cai(home, box, "session", "logs", session).stdout.endswith("a b 'c'\n"), timeout=10)
    assert cai(home, box, "session", "logs", session).stdout.splitlines()[-2:] == ["/home/agent/workspace/sub", "a b 'c'"]


def test_ls_prune_and_the_name_is_free_again(home, box):
    running = new(home, box, "--", "sleep", "300")
    ended = new(home, box, "--", "true")
    assert cai(home, box, "session", "wait", ended).returncode == 0
    default = listed(home, box)
    assert running in default and ended not in default
    everything = listed(home, box, "-a")
    assert everything[running]["state"] == "running" and everything[ended]["state"] == "exited"
    text = cai(home, box, "session", "ls", "-a").stdout.splitlines()
    assert text[0].split() == ["NAME", "STATE", "STARTED", "ATTACHED", "COMMAND", "LOG"]
    assert any(line.split()[:3] == [ended, "exited", "(0)"] for line in text), text
    dry = cai(home, box, "session", "prune", "--dry-run")
    assert f"Would remove: {ended}" in dry.stdout.splitlines() and running not in dry.stdout
    assert ended in listed(home, box, "-a")
    kept = json.loads(cai(home, box, "session", "prune", "--age", "1d", "--json").stdout)
    assert ended in kept["kept"] and kept["removed"] == []
    pruned = json.loads(cai(home, box, "session", "prune", "--json").stdout)
    assert ended in pruned["removed"] and running not in pruned["removed"]
    after = listed(home, box, "-a")
    assert ended not in after and after[running]["state"] == "running"
    assert new(home, box, ended, "--", "true") == ended  # the name is free again
    assert cai(home, box, "session", "kill", running).returncode == 0


def test_attach_needs_a_terminal(home, box):
    session = new(home, box, "--", "sleep", "300")
    done = cai(home, box, "attach", session)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "[ERROR] cai attach needs a terminal (stdin and stdout)"
    assert cai(home, box, "session", "kill", session).returncode == 0


def test_two_clients_detach_and_a_killed_client(home, box):
    session = new(home, box, "--log", "--", "python3", "-q")
    writer, watcher = Tmux(home, 100, 30), Tmux(home, 100, 30)
    try:
        writer.type(f"{CAI} attach --container {box[1]} {session}; echo attach-rc=$?")
        watcher.type(f"{CAI} attach -r --container {box[1]} {session}; echo watch-rc=$?")
        wait_for(lambda: listed(home, box)[session]["attached_clients"] == 2, timeout=30, interval=0.3)
        writer.type("print('from', 'writer')")
        watcher.wait_for_text(r"^from writer$")  # the watcher sees it
        watcher.type("print('from watcher')")  # read-only: never reaches python
        writer.key("C-b")
        writer.key("d")
        writer.wait_for_text(r"^attach-rc=0$")
        assert "[detached" in writer.screen()
        victims = subprocess.run(["pgrep", "-f", f"cai attach -r --container {box[1]} {session}"],
                                 capture_output=True, text=True).stdout.split()
        assert victims
        subprocess.run(["kill", "-KILL", *victims], check=True)
        # and then its ssh, as a dropped connection would end it
        subprocess.run(["pkill", "-KILL", "-f", f"cai-session attach {SESSIONS} {session} 1"], check=True)
        wait_for(lambda: listed(home, box)[session]["attached_clients"] == 0, timeout=30, interval=0.3)
        assert listed(home, box)[session]["state"] == "running"
        writer.type(f"{CAI} attach --container {box[1]} {session}; echo attach-rc=$?")
        wait_for(lambda: listed(home, box)[session]["attached_clients"] == 1, timeout=30, interval=0.3)
        writer.type("exit()")
        writer.wait_for_text(r"^attach-rc=0$")
    finally:
        writer.close()
        watcher.close()
    assert cai(home, box, "session", "wait", session).returncode == 0
    log = cai(home, box, "session", "logs", session).stdout
    assert "from writer" in log and "from watcher" not in log


def test_run_detached_is_a_session(home, box, docker_client):
    workspace, name = box
    marker = unique("bg")
    done = run_cai(home, "run", str(workspace), "-d", "--", "sh", "-c", f"echo done > {marker}; exit 4")
    assert done.returncode == 0, done.stderr
    session = done.stdout.strip()
    assert re.fullmatch(r"[a-z]+-[0-9]{2}", session), session
    assert cai(home, box, "session", "wait", session).returncode == 4
    assert (workspace / marker).read_text() == "done\n"


def test_tampered_records_are_data_not_a_crash(home, box, docker_client):
    _, name = box
    directory = SESSIONS + "/.records"
    as_agent(docker_client, name, f"""
        mkdir -p {directory} && cd {directory}
        python3 -c 'print("[" * 60000 + "]" * 60000)' > deep.json
        printf '99999999999999999999999 x\\n' > deep.exit
        printf '{{"command": ["\\u001b[31mred"]}}' > ansi.json
        printf '\\331\\243 1\\n' > ansi.exit
        printf '{{"command": ["ok", 3]}}' > mixed.json
        printf '{{}}' > 'new
line.json'
        printf 'not json' > broken.json
        printf '%s' 12 > broken.lost
    """)
    done = cai(home, box, "session", "ls", "-a", "--json")
    assert done.returncode == 0, done.stderr
    found = {s["name"]: s for s in json.loads(done.stdout)["sessions"]}
    assert found["deep"]["exit_code"] is None and found["deep"]["command"] is None
    assert found["ansi"]["exit_code"] is None  # Unicode digits are no code
    assert found["ansi"]["command"] == ["\x1b[31mred"] and found["mixed"]["command"] is None
    assert found["broken"]["state"] == "lost" and found["broken"]["lost_at"] == "1970-01-01T00:00:12Z"
    assert not any("\n" in key for key in found)
    text = cai(home, box, "session", "ls", "-a")
    assert text.returncode == 0 and "\x1b" not in text.stdout
    assert cai(home, box, "session", "wait", "deep").returncode == 1  # lost, not a code out of range
    as_agent(docker_client, name, f"cd {directory} && rm -f deep.* ansi.* mixed.* 'new\nline.json' broken.*")


def test_a_flood_of_records_is_cut_at_the_bound(home, box, docker_client):
    """The agent can make the control script say anything: cai reads 8 MiB of it, then fails."""
    _, name = box
    as_agent(docker_client, name, f"""cd {SESSIONS}/.records && python3 -c '
for i in range(160):
    open(f"flood{{i}}.json", "w").write("{{\\"command\\": [\\"" + "x" * 65000 + "\\"]}}")'""")
    try:
        started = time.monotonic()
        done = cai(home, box, "session", "ls", "-a", timeout=60)
        assert done.returncode == 1, done.stdout[:200]
        assert f"{name} answered with more than 8 MiB; cai stopped reading" in done.stderr.splitlines()[0], done.stderr
        assert time.monotonic() - started < 30
    finally:
        as_agent(docker_client, name, f"rm -f {SESSIONS}/.records/flood*.json")
    assert cai(home, box, "session", "ls", "-a").returncode == 0


def test_send_keeps_a_final_semicolon_and_long_commands_start(home, box):
    session = new(home, box, "--log", "--", "cat")
    for text in ("SELECT 1;", "a\\;", ";"):
        assert cai(home, box, "session", "send", session, "--", text).returncode == 0
    wait_for(lambda: cai(home, box, "session", "logs", session).stdout.count(";") >= 6, timeout=10)
    echoed = cai(home, box, "session", "logs", session).stdout.splitlines()
    assert echoed == ["SELECT 1;", "SELECT 1;", "a\\;", "a\\;", ";", ";"], echoed  # typed, then cat's copy
    assert cai(home, box, "session", "kill", session).returncode == 0
    long = "x" * 120_000  # one argv word may hold 128 KiB; cai sends it on stdin, not in ssh's argv
    session = new(home, box, "--", "python3", "-c", f"import sys; sys.exit(len('{long}') % 256)")
    assert cai(home, box, "session", "wait", session, timeout=30).returncode == 120_000 % 256


def test_a_command_past_128_kib_runs_and_one_that_cannot_start_fails_new(home, box):
    """Issue 25: 300 KiB of words ran as one `bash -lc` argument and died with 126, while `new`
    printed the name. The words now run from the session's file; a command that cannot start
    (its interpreter is missing, or no such program) makes `new` fail, with bash's words."""
    words = [f"{index:05d}" + "y" * 95 for index in range(3000)]  # 300 KiB in 3,000 words
    session = new(home, box, "--", "python3", "-c", "import sys; sys.exit(len(sys.argv) % 256)", *words)
    assert cai(home, box, "session", "wait", session, timeout=30).returncode == 3001 % 256
    assert cai(home, box, "exec", "--", "sh", "-c", "printf '#!/no/such/interpreter\\n' > broken && chmod +x broken"
               ).returncode == 0
    broken = cai(home, box, "session", "new", unique("broken"), "--", "./broken")
    assert (broken.returncode, broken.stdout) == (1, ""), broken.stderr
    assert "could not start its command" in broken.stderr and "cannot execute" in broken.stderr, broken.stderr
    missing = cai(home, box, "session", "new", unique("nothing"), "--", "no-such-program", "x")
    assert (missing.returncode, missing.stdout) == (1, ""), missing.stderr
    assert "no-such-program" in missing.stderr and "command not found" in missing.stderr
    builtin = new(home, box, "--", "exit", "9")  # a builtin runs in the session's shell: no exec to wait for
    assert cai(home, box, "session", "wait", builtin, timeout=30).returncode == 9


def test_a_missing_workdir_is_refused_before_anything_runs(home, box):
    done = cai(home, box, "session", "new", unique("nowhere"), "--workdir", "no/such/dir", "--", "true")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[0] == "[ERROR] No such directory in the workspace: no/such/dir"


def test_home_with_a_space(tmp_path, box, docker_client):
    home = tmp_path / "a home"
    home.mkdir()
    session = new(home, box, "--log", "--", "sh", "-c", "echo spaced")
    assert cai(home, box, "session", "wait", session).returncode == 0
    wait_for(lambda: cai(home, box, "session", "logs", session).stdout == "spaced\n", timeout=10)


OSC52 = "\033]52;c;cm0gLXJmIH4=\007"  # a clipboard write: `rm -rf ~`


def test_logs_on_a_terminal_drop_osc_dcs_and_apc_and_keep_colours(home, box):
    script = rf"printf 'a{OSC52}b\033[31mred\033[0m\033P+q544e\033\\c\033_Gf=1;QUFB\033\\d\n'"
    session = new(home, box, "--log", "--", "sh", "-c", script)
    assert cai(home, box, "session", "wait", session).returncode == 0
    raw = "a" + OSC52 + "b\033[31mred\033[0m\033P+q544e\033\\c\033_Gf=1;QUFB\033\\d\n"
    wait_for(lambda: cai(home, box, "session", "logs", session).stdout == raw, timeout=10)  # a pipe: every byte
    assert on_terminal(home, box, "session", "logs", session) == b"ab\033[31mred\033[0mcd\n"
    assert on_terminal(home, box, "session", "logs", "--raw", session) == raw.encode()
    screen = new(home, box, "--", "sh", "-c", rf"printf 'x{OSC52}y\n'; sleep 300")  # no --log: the screen
    wait_for(lambda: "y" in cai(home, box, "session", "logs", screen).stdout, timeout=10)
    assert b"\033]" not in on_terminal(home, box, "session", "logs", screen)
    assert cai(home, box, "session", "kill", "-s", "KILL", screen).returncode == 0


def test_the_agents_login_shell_reaches_no_terminal_through_stderr(home, box, docker_client):
    """The agent's ~/.bashrc writes to stderr on every login: on a terminal it goes through the
    same filter as the log (review of issue 24)."""
    session = new(home, box, "--log", "--", "sh", "-c", "echo clean")
    assert cai(home, box, "session", "wait", session).returncode == 0
    container = docker_client.containers.get(box[1])
    line = "printf '\\033]52;c;cm0gLXJmIH4=\\007' >&2"  # the shell's own printf makes the bytes
    planted = container.exec_run(["sh", "-c", 'cp ~/.bashrc ~/.bashrc.kept && { printf "%s\\n" "$LINE"; '
                                              'cat ~/.bashrc.kept; } > ~/.bashrc'], user="agent", environment={"LINE": line})
    assert planted.exit_code == 0, planted.output
    try:
        received = on_terminal(home, box, "session", "logs", session, stderr_too=True)
    finally:
        container.exec_run(["sh", "-c", "mv ~/.bashrc.kept ~/.bashrc"], user="agent")
    assert b"clean" in received and b"\033]" not in received, received


def test_a_neighbour_on_the_data_volume_reaches_no_session(home, box, docker_client, neighbour):
    """The attacks of a second container on the shared volume, each against where the records
    were before: a link to the checkout, a forged end, reading the logs, planted escapes."""
    workspace, name = box
    for precious in ("package.json", "tsconfig.json"):
        (workspace / precious).write_text('{"precious": true}\n')
    secret = unique("secret")
    job = new(home, box, "--log", "--", "bash", "-c", f"echo {secret}; read line; exit 7")
    ended = new(home, box, "--log", "--", "true")
    assert cai(home, box, "session", "wait", ended).returncode == 0
    wait_for(lambda: secret in cai(home, box, "session", "logs", job).stdout, timeout=10)
    before = checkout(workspace)
    legacy = legacy_dir(docker_client, name)
    as_neighbour(neighbour, f"""
        set -e
        mkdir -p {legacy} {LEGACY}/forged/.records
        ln -sfn /home/agent/workspace {legacy}/.records
        for n in {job} {ended} package tsconfig; do
            printf '0 1700000000\\n' > {LEGACY}/forged/.records/$n.exit
            printf '{{}}\\n' > {LEGACY}/forged/.records/$n.json
            printf '{OSC52}planted\\n' > {LEGACY}/forged/$n.log
            ln -sfn /home/agent/workspace/$n.json {legacy}/$n.log
        done
    """)
    assert not as_neighbour(neighbour, f"grep -rl {secret} /mnt/agent-data || true")  # no log is in the volume
    assert not as_neighbour(neighbour, f"ls -a {SESSIONS} 2>/dev/null || true")  # its own layer has none

    listing = listed(home, box, "-a")
    assert listing[job]["state"] == "running" and listing[job]["exit_code"] is None
    assert "package" not in listing and "tsconfig" not in listing
    pruned = json.loads(cai(home, box, "session", "prune", "--json").stdout)
    assert ended in pruned["removed"] and job not in pruned["removed"] and pruned["orphans"] == []
    as_neighbour(neighbour, f"""
        set -e
        rm {legacy}/.records {legacy}/*.log && mkdir {legacy}/.records
        printf '0 1700000000\\n' > {legacy}/.records/{job}.exit
        printf '{{}}\\n' > {legacy}/.records/{job}.json
        printf '{OSC52}planted\\n' > {legacy}/{job}.log
    """)
    assert listed(home, box)[job]["state"] == "running"
    assert b"planted" not in on_terminal(home, box, "session", "logs", job)
    assert cai(home, box, "session", "send", job, "go").returncode == 0  # a forged end does not stop send
    done = cai(home, box, "session", "wait", job, timeout=30)
    assert (done.returncode, done.stdout) == (7, "7\n"), done.stderr  # the real code
    assert checkout(workspace) == before
    assert as_neighbour(neighbour, f"cat {legacy}/.records/{job}.exit") == "0 1700000000\n"  # left alone
    as_neighbour(neighbour, f"rm -rf {legacy} {LEGACY}/forged")
    for precious in ("package.json", "tsconfig.json"):
        (workspace / precious).unlink()


def test_export_carries_the_sessions_only_when_asked(home, box, tmp_path, docker_client):
    _, name = box
    session = new(home, box, "--log", "--", "sh", "-c", "echo exported-line")
    assert cai(home, box, "session", "wait", session).returncode == 0
    as_agent(docker_client, name, f"ln -sfn /etc/shadow {SESSIONS}/planted.log && mkfifo {SESSIONS}/.records/fifo.json")
    try:
        plain = run_cai(home, "export", "--container", name, "-o", str(tmp_path / "plain.tgz"))
        assert plain.returncode == 0, plain.stderr
        with tarfile.open(tmp_path / "plain.tgz") as archive:
            assert not any(n.startswith("./.cai-sessions") for n in archive.getnames())
        done = run_cai(home, "export", "--container", name, "--sessions", "-o", str(tmp_path / "with.tgz"))
        assert done.returncode == 0, done.stderr
        with tarfile.open(tmp_path / "with.tgz") as archive:
            members = {m.name: m for m in archive.getmembers() if m.name.startswith("./.cai-sessions")}
            assert archive.extractfile(members[f"./.cai-sessions/{session}.log"]).read() == b"exported-line\r\n"
            assert json.loads(archive.extractfile(members[f"./.cai-sessions/.records/{session}.json"]).read())["log"]
            assert all(m.isfile() or m.isdir() for m in members.values())  # not the link, not the FIFO
            assert "./.cai-sessions/planted.log" not in members and "./.cai-sessions/.records/fifo.json" not in members
        refused = run_cai(home, "export", "--sessions", "-o", str(tmp_path / "no.tgz"), cwd=str(tmp_path))
        assert refused.returncode == 1 and "--sessions needs --container" in refused.stderr
    finally:
        as_agent(docker_client, name, f"rm -f {SESSIONS}/planted.log {SESSIONS}/.records/fifo.json")


def test_a_session_directory_that_is_a_link_is_refused_by_every_verb(home, box, docker_client):
    """The agent itself may point its session directory at the checkout: nothing is written or
    removed there, and nothing is read from it."""
    workspace, name = box
    (workspace / "keep.json").write_text("{}\n")
    (workspace / ".records").mkdir(exist_ok=True)
    (workspace / ".records" / "keep.json").write_text("{}\n")
    (workspace / ".records").chmod(0o777)
    before = checkout(workspace)
    for link, target in ((SESSIONS, "/home/agent/workspace"), (f"{SESSIONS}/.records", "/home/agent/workspace/.records")):
        as_agent(docker_client, name, f"mv {link} {link}.real && ln -s {target} {link}")
        try:
            for argv in (("session", "ls", "-a"), ("session", "prune"), ("session", "wait", "keep"),
                         ("session", "new", "--", "true"), ("session", "logs", "keep")):
                done = cai(home, box, *argv)
                assert done.returncode == 1, (argv, done.stdout, done.stderr)
                assert "the session directory failed its check" in done.stderr, (argv, done.stderr)
            assert checkout(workspace) == before
        finally:
            as_agent(docker_client, name, f"rm {link} && mv {link}.real {link}")
    assert cai(home, box, "session", "ls", "-a").returncode == 0
    (workspace / "keep.json").unlink()
    (workspace / ".records" / "keep.json").unlink()
    (workspace / ".records").rmdir()


def test_when_the_probe_fails_the_records_still_count(home, box, docker_client):
    """An agent can make the root probe fail (pids, memory); here its sh is gone. stop, kill
    and restart still see the running session through cai's records, and refuse without --force."""
    _, name = box
    session = new(home, box, "--", "sleep", "300")
    container = docker_client.containers.get(name)
    assert container.exec_run(["mv", "/usr/bin/dash", "/usr/bin/dash.off"]).exit_code == 0
    try:
        for argv in (("stop",), ("kill", "-s", "TERM"), ("restart",)):
            done = cai(home, box, *argv)
            assert done.returncode == 1, (argv, done.stderr)
            assert f"by cai's records, detached sessions: {session}" in done.stderr.splitlines()[0], done.stderr
            assert docker_client.containers.get(name).status == "running"
    finally:
        assert container.exec_run(["mv", "/usr/bin/dash.off", "/usr/bin/dash"]).exit_code == 0
    assert cai(home, box, "session", "kill", session).returncode == 0
    assert cai(home, box, "session", "wait", session).returncode == 143


def test_stop_is_refused_while_a_session_runs_and_it_is_lost_afterwards(home, box, docker_client):
    _, name = box
    finished = new(home, box, "--", "bash", "-c", "exit 9")
    marked = new(home, box, "--log", "--", "sh", "-c", rf"printf 'p{OSC52}q\n'")
    assert cai(home, box, "session", "wait", marked).returncode == 0
    assert cai(home, box, "session", "wait", finished).returncode == 9
    session = new(home, box, "--log", "--", "bash", "-c", "echo started; sleep 600")
    wait_for(lambda: "started" in cai(home, box, "session", "logs", session).stdout, timeout=15)
    done = cai(home, box, "stop")
    assert done.returncode == 1
    assert re.search(rf"has active sessions \(.*detached sessions: {session}\)", done.stderr), done.stderr
    assert docker_client.containers.get(name).status == "running"
    status = json.loads(cai(home, box, "status", "--json").stdout)
    assert status["sessions"]["state"] == "has" and session in status["sessions"]["detached_sessions"]
    assert f"Detached sessions: {session}" in cai(home, box, "status").stdout
    ps = json.loads(run_cai(home, "ps", "--format", "json", "--filter", f"name={name}").stdout)
    assert session in ps["containers"][0]["sessions"]["detached_sessions"]

    assert cai(home, box, "stop", "--force").returncode == 0
    container = docker_client.containers.get(name)
    assert container.status == "exited"
    stopped_at = container.attrs["State"]["FinishedAt"][:19] + "Z"
    found = listed(home, box, "-a")
    assert found[session]["state"] == "lost" and found[session]["lost_at"] == stopped_at
    assert found[finished]["state"] == "exited"
    assert docker_client.containers.get(name).status == "exited"  # read without starting it
    assert cai(home, box, "session", "logs", session).stdout == "started\n"
    assert cai(home, box, "session", "logs", "-f", session).stdout == "started\n"  # nothing more will come
    assert on_terminal(home, box, "session", "logs", marked) == b"pq\n"  # read through the engine, filtered
    assert cai(home, box, "session", "logs", marked).stdout == f"p{OSC52}q\n"
    assert cai(home, box, "session", "wait", finished).returncode == 9
    lost = cai(home, box, "session", "wait", session)
    assert lost.returncode == 1 and "was lost" in lost.stderr

    assert run_cai(home, "run", "--no-agent", "--container", name).returncode == 0
    time.sleep(1.5)
    again = listed(home, box, "-a")
    assert again[session]["state"] == "lost" and again[session]["lost_at"] == stopped_at
    assert cai(home, box, "session", "wait", finished).returncode == 9
    assert cai(home, box, "stop").returncode == 0  # nothing runs any more
