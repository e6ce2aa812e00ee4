"""Issue 15: cai never breaks the user's ssh or config, reads only ASCII numbers, allocates a PTY
only between two terminals, and says exactly what the original says. Real engine, real sshd."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import agent_workspace, run_cai


def containers_for(docker_client, workspace: Path):
    return docker_client.containers.list(all=True, filters={"label": f"containai.workspace={workspace.resolve()}"})


@pytest.fixture()
def spaced_home(tmp_path):
    home = tmp_path / "dev user"
    home.mkdir()
    return home


def test_a_home_with_a_space_keeps_every_ssh_working(spaced_home, tmp_path_factory, tmp_path, docker_client):
    workspace = agent_workspace(tmp_path_factory, "spaced-ws")
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="t d", dir="/tmp"))  # short: a socket path has ~86 bytes to spare
    env = {"TMPDIR": str(temp), "XDG_RUNTIME_DIR": None}
    env = {k: v for k, v in env.items() if v is not None}
    try:
        done = run_cai(spaced_home, "run", "--no-agent", str(workspace), env=env)
        assert done.returncode == 0, done.stderr
        for _ in range(2):  # the second call goes through the control master under TMPDIR
            done = run_cai(spaced_home, "exec", "-w", str(workspace), "--", "echo", "ok", env=env)
            assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
        assert any(p.is_socket() for p in (temp / f"cai-{os.getuid()}").iterdir())
        # The Include puts NAME.conf into every ssh the user runs, for any host: one bad line there
        # breaks them all. (ssh finds ~ through the passwd entry, not HOME, hence -F.)
        name = containers_for(docker_client, workspace)[0].name
        conf = spaced_home / ".ssh" / "containai.d" / f"{name}.conf"
        checked = subprocess.run(["ssh", "-G", "-F", str(conf), "github.com"], capture_output=True, text=True, timeout=10)
        assert checked.returncode == 0, checked.stderr
        plain = subprocess.run(["ssh", "-F", str(conf), name, "echo", "plain"], capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
        assert (plain.returncode, plain.stdout) == (0, "plain\n"), plain.stderr
    finally:
        for container in containers_for(docker_client, workspace):
            container.remove(force=True)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_symlinked_ssh_config_stays_a_link(tmp_path, tmp_path_factory, docker_client):
    home = tmp_path / "home"
    dotfiles = tmp_path / "dotfiles"
    (home / ".ssh").mkdir(parents=True)
    dotfiles.mkdir()
    (dotfiles / "ssh_config").write_text("Host example\n    User me\n")
    (home / ".ssh" / "config").symlink_to(dotfiles / "ssh_config")
    workspace = agent_workspace(tmp_path_factory, "link-ws")
    try:
        done = run_cai(home, "run", "--no-agent", str(workspace))
        assert done.returncode == 0, done.stderr
        link = home / ".ssh" / "config"
        assert link.is_symlink() and os.readlink(link) == str(dotfiles / "ssh_config")
        assert (dotfiles / "ssh_config").read_text() == "Include ~/.ssh/containai.d/*.conf\n\nHost example\n    User me\n"
    finally:
        for container in containers_for(docker_client, workspace):
            container.remove(force=True)


def test_an_unreadable_ssh_config_stops_before_any_container(tmp_path, tmp_path_factory, docker_client):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_bytes(b"Host x\n    User caf\xe9\n")
    workspace = agent_workspace(tmp_path_factory, "latin1-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    assert done.returncode == 12
    assert done.stderr.splitlines()[0] == f"[ERROR] Cannot read {home}/.ssh/config: not UTF-8 (byte 19)"
    assert "Unexpected error" not in done.stderr
    assert containers_for(docker_client, workspace) == []
    assert (home / ".ssh" / "config").read_bytes() == b"Host x\n    User caf\xe9\n"


@pytest.mark.parametrize("where", ["user", "workspace"])
def test_a_config_with_a_typo_is_an_error_and_is_never_rewritten(tmp_path, tmp_path_factory, docker_client, where):
    home = tmp_path / "home"
    workspace = agent_workspace(tmp_path_factory, "typo-ws")
    path = (home / ".config" / "containai" / "config.toml") if where == "user" else (workspace / ".containai" / "config.toml")
    path.parent.mkdir(parents=True)
    text = 'data_volume = "keep-me"\n[secure_engine]\ncontext_name = "x\n'
    path.write_text(text)
    commands = [["run", str(workspace)], ["export", "-w", str(workspace)]]
    if where == "user":  # status reads the user config's workspace state, not the workspace's config
        commands.append(["status", "-w", str(workspace)])
    for argv in commands:
        done = run_cai(home, *argv)
        assert done.returncode == 1, (argv, done.stderr)
        lines = done.stderr.splitlines()
        assert lines[0] == f"[ERROR] Failed to parse config: {path}", lines
        assert "line 3" in lines[1]
        assert path.read_text() == text
    assert containers_for(docker_client, workspace) == []


def test_an_unwritable_config_dir_is_exit_12_with_the_path(tmp_path, tmp_path_factory, docker_client):
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "containai").write_text("not a directory")  # root ignores modes; a file stops mkdir
    workspace = agent_workspace(tmp_path_factory, "nodir-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    assert done.returncode == 12
    assert done.stderr.splitlines()[0].startswith(f"[ERROR] Cannot create {home}/.config/containai")
    assert containers_for(docker_client, workspace) == []


def test_a_missing_ssh_keygen_is_named_at_once(tmp_path, tmp_path_factory, docker_client):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "docker"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    workspace = agent_workspace(tmp_path_factory, "nokeygen-ws")
    started = time.monotonic()
    done = run_cai(tmp_path / "home", "run", "--no-agent", str(workspace), env={"PATH": str(bin_dir)})
    assert done.returncode == 12
    assert done.stderr.splitlines()[0] == "[ERROR] ssh-keygen not found on PATH"
    assert time.monotonic() - started < 10
    assert containers_for(docker_client, workspace) == []


def test_stdout_to_a_pipe_gets_no_pty_even_from_a_terminal(ws, home):
    """`cai exec -- tar c . > a.tar` from an interactive shell: the bytes must not pass a PTY."""
    workspace, _ = ws
    primary, secondary = pty.openpty()
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    script = "printf 'a\\nb\\r\\n\\001'; printf 'to stderr\\n' >&2"
    child = subprocess.run([sys.executable, "-m", "cai", "exec", "-w", str(workspace), "--", "sh", "-c", script],
                           stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    os.close(secondary)
    os.close(primary)
    assert child.returncode == 0
    assert child.stdout == b"a\nb\r\n\x01"
    assert child.stderr == b"to stderr\n"


def test_fullwidth_digits_are_not_an_age(home):
    done = run_cai(home, "gc", "--dry-run", "--age", "１d")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("[ERROR] Invalid age format:")
    assert run_cai(home, "gc", "--dry-run", "--age", "1d\n").returncode == 1


def test_an_odd_port_label_breaks_only_its_own_container(ws, home, make_container, docker_client):
    workspace, name = ws
    odd = make_container(labels={"containai.managed": "true", "containai.workspace": "/nowhere", "containai.ssh-port": "²"})
    zero = make_container(labels={"containai.managed": "true", "containai.workspace": "/nowhere2", "containai.ssh-port": "0"})
    done = run_cai(home, "exec", "-w", str(workspace), "--", "true")
    assert done.returncode == 0, done.stderr
    for argv in (["status", "--container", name], ["gc", "--dry-run"], ["stop", "--container", odd.name, "--force"]):
        done = run_cai(home, *argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "Unexpected error" not in done.stderr
    zero.start() if zero.status != "running" else None
    done = run_cai(home, "exec", "--container", zero.name, "--", "true")
    assert done.returncode == 12
    assert done.stderr.splitlines()[0] == "[ERROR] Container has no SSH port configured"


def test_the_original_messages(home, make_container, ws, tmp_path):
    done = run_cai(home, "stop", "--container=")
    assert (done.returncode, done.stderr.splitlines()[0]) == (1, "[ERROR] --container requires a value")
    done = run_cai(home, "export", "--data-volume", "bad/name", cwd=str(tmp_path))
    assert (done.returncode, done.stderr.splitlines()) == (1, [
        "[ERROR] Invalid volume name: bad/name", "[ERROR] Failed to resolve data volume"])
    done = run_cai(home, "gc", "--age=", cwd=str(tmp_path))
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "[ERROR] --age requires a value\n")
    done = run_cai(home, "gc", "--age", cwd=str(tmp_path))
    assert (done.returncode, done.stderr.splitlines()[0]) == (1, "[ERROR] --age requires a value (e.g., 30d, 7d, 24h)")
    foreign = make_container(image="containai:latest", labels={"containai.managed": "false"})
    done = run_cai(home, "exec", "--container", foreign.name, "--", "true")
    assert (done.returncode, done.stderr.splitlines()) == (15, [
        f"[ERROR] Container {foreign.name} exists but is not managed by ContainAI",
        "[HINT] Remove the conflicting container or use a different name"])
    _, name = ws
    status = run_cai(home, "status", "--container", name)
    memory = [line for line in status.stdout.splitlines() if line.strip().startswith("Memory:")]
    assert len(memory) == 1 and memory[0].endswith("%)") and "." not in memory[0].rsplit("(", 1)[1], memory


def test_one_ownership_rule_an_unlabelled_containai_container_is_foreign_everywhere(home, make_container, tmp_path):
    """`docker create containai:latest` is not cai's: 15 with the original's words for every verb,
    never 12 with a hint about SSH support, never 0 from logs."""
    plain = make_container(image="containai:latest")
    for argv in (("exec", "--container", plain.name, "--", "true"), ("cp", f"{plain.name}:x", str(tmp_path)),
                 ("logs", "--container", plain.name), ("shell", "--container", plain.name),
                 ("port", "--container", plain.name), ("session", "ls", "--container", plain.name)):
        done = run_cai(home, *argv)
        assert (done.returncode, done.stderr.splitlines()[:1]) == (
            15, [f"[ERROR] Container {plain.name} exists but is not managed by ContainAI"]), (argv, done.stderr)
    for argv in (("stop", "--container", plain.name), ("status", "--container", plain.name)):
        done = run_cai(home, *argv)
        assert (done.returncode, done.stderr.splitlines()[:1]) == (
            1, [f"[ERROR] Container {plain.name} exists but is not managed by ContainAI"]), (argv, done.stderr)
    plain.reload()
    assert plain.status == "running"


# --- root never follows what the agent controls -----------------------------------------------


def _root_state(container):
    """What a root write through an agent's link would change."""
    script = "sha256sum /etc/passwd /etc/shadow /etc/ld.so.preload 2>/dev/null; stat -c '%U:%G %a' /etc; ls /etc/authorized_keys 2>&1"
    return container.exec_run(["sh", "-c", script]).output.decode()


@pytest.fixture()
def agent_box(tmp_path, tmp_path_factory, docker_client):
    home = tmp_path / "home"
    workspace = agent_workspace(tmp_path_factory, "attack-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    assert done.returncode == 0, done.stderr
    container = docker_client.containers.get(done.stdout.strip())
    yield home, workspace, container
    container.remove(force=True)


ATTACKS = {
    "ssh dir to /etc": ("mv ~/.ssh ~/.ssh.x && ln -s /etc ~/.ssh", "/home/agent/.ssh is a symbolic link (to /etc)"),
    "keys to /etc/passwd": ("rm -f ~/.ssh/authorized_keys && ln -s /etc/passwd ~/.ssh/authorized_keys",
                            "/home/agent/.ssh/authorized_keys is a symbolic link (to /etc/passwd)"),
    "keys to a FIFO": ("rm -f ~/.ssh/authorized_keys && mkfifo ~/.ssh/authorized_keys",
                       "/home/agent/.ssh/authorized_keys is not a regular file"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_key_injection_never_writes_through_an_agents_link(agent_box, attack):
    home, workspace, container = agent_box
    script, named = ATTACKS[attack]
    before = _root_state(container)
    assert container.exec_run(["sh", "-c", script], user="agent").exit_code == 0
    (home / ".ssh" / "containai.d" / f"{container.name}.conf").unlink()  # the next exec sets SSH up again
    started = time.monotonic()
    done = run_cai(home, "exec", "-w", str(workspace), "--", "true", env={"CAI_SSH_MULTIPLEX": "0"})
    assert done.returncode == 12, done.stderr
    assert done.stderr.splitlines()[0] == "[ERROR] Failed to inject SSH key into container"
    assert any(named in line for line in done.stderr.splitlines()), done.stderr
    assert time.monotonic() - started < 30  # a FIFO must not hang it
    assert _root_state(container) == before


def test_a_removed_key_file_is_written_again_in_the_agents_own_home(agent_box):
    home, workspace, container = agent_box
    container.exec_run(["rm", "-f", "/home/agent/.ssh/authorized_keys"], user="agent")
    (home / ".ssh" / "containai.d" / f"{container.name}.conf").unlink()
    done = run_cai(home, "exec", "-w", str(workspace), "--", "stat", "-c", "%U %a", "/home/agent/.ssh/authorized_keys",
                   env={"CAI_SSH_MULTIPLEX": "0"})
    assert (done.returncode, done.stdout) == (0, "agent 600\n"), done.stderr


def test_the_session_probe_runs_nothing_the_agent_can_replace(agent_box):
    """An image whose /usr/local/bin the agent can write (it comes first on PATH): the probe still
    runs only root's own programs."""
    home, workspace, container = agent_box
    container.exec_run(["/bin/chmod", "777", "/usr/local/bin"])
    trap = "#!/bin/sh\n/bin/touch /tmp/ran-as-$(/bin/id -u)\nexec /bin/$(/bin/basename $0) \"$@\"\n"
    plant = "for p in sh ss cat ls env; do printf '%s' \"$0\" > /usr/local/bin/$p; /bin/chmod 755 /usr/local/bin/$p; done"
    assert container.exec_run(["/bin/sh", "-c", plant, trap], user="agent").exit_code == 0
    assert container.exec_run(["/bin/test", "-x", "/usr/local/bin/ss"]).exit_code == 0
    done = run_cai(home, "status", "--container", container.name)
    assert done.returncode == 0, done.stderr
    assert "Sessions (best-effort):" in done.stdout
    assert container.exec_run(["/bin/sh", "-c", "/bin/ls /tmp/ran-as-* 2>/dev/null"]).output == b""


# --- host keys come from the engine -----------------------------------------------------------


def test_parallel_first_execs_pin_every_engine_key_once(ws, tmp_path, docker_client):
    import concurrent.futures

    workspace, name = ws
    home = tmp_path / "fresh-home"
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: run_cai(home, "exec", "-w", str(workspace), "--", "true"), range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    container = docker_client.containers.get(name)
    shown = container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).output.decode()
    engine_keys = sorted(" ".join(line.split()[:2]) for line in shown.splitlines())
    pinned = (home / ".config" / "containai" / "known_hosts").read_text().splitlines()
    assert sorted(line.split(" ", 1)[1] for line in pinned) == engine_keys
    assert {line.split(" ", 1)[0] for line in pinned} == {f"cai-default-{container.id[:12]}"}
    assert len(engine_keys) == 3


# --- contexts are exact -----------------------------------------------------------------------


def _context(home, name, host):
    env = {**os.environ, "DOCKER_CONFIG": str(home / ".docker")}
    subprocess.run(["docker", "context", "create", name, "--docker", f"host={host}"], check=True, capture_output=True,
                   env=env, timeout=30)


def _user_config(home, text):
    path = home / ".config" / "containai" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("where", ["env", "config"])
def test_a_named_context_that_does_not_exist_is_an_error_not_a_fallback(tmp_path, where):
    home = tmp_path / "home"
    env = {}
    if where == "env":
        env["CONTAINAI_SECURE_ENGINE_CONTEXT"] = "nosuch"
        source = "CONTAINAI_SECURE_ENGINE_CONTEXT"
    else:
        path = _user_config(home, '[secure_engine]\ncontext_name = "nosuch"\n')
        source = f"[secure_engine].context_name in {path}"
    for argv in (["gc", "--force", "--json"], ["stop", "--all"], ["doctor"]):
        done = run_cai(home, *argv, env=env, cwd=str(tmp_path))
        assert done.returncode == 1, (argv, done.stderr)
        lines = done.stderr.splitlines()
        assert lines[:2] == ["[ERROR] Docker context or connection issue",
                             f"[ERROR]   Docker context not found: nosuch (from {source})"], (argv, lines)
        assert "[WARN]" not in done.stderr and "DOCKER_CONTEXT" not in done.stderr.replace(source, "")
        if argv[0] == "gc":  # the one JSON document it promised says why (docs/json.md)
            import json

            assert json.loads(done.stdout)["error"]["kind"] == "engine_context"
        elif argv[0] == "stop":
            assert done.stdout == ""


def test_a_repo_config_without_the_key_does_not_hide_the_users_context(tmp_path, tmp_path_factory):
    home = tmp_path / "home"
    _context(home, "mine", "unix:///var/run/docker.sock")
    _user_config(home, '[secure_engine]\ncontext_name = "mine"\n')
    workspace = agent_workspace(tmp_path_factory, "layered-ws")
    (workspace / ".containai").mkdir()
    (workspace / ".containai" / "config.toml").write_text('data_volume = "repo-vol"\n')
    import json

    done = run_cai(home, "doctor", "--json", cwd=str(workspace))
    assert json.loads(done.stdout)["engine"]["context"] == "mine", done.stderr
    plan = run_cai(home, "run", "--dry-run", str(workspace))
    assert plan.returncode == 0, plan.stderr
    assert "DOCKER_CONTEXT=mine" in plan.stdout and "repo-vol" in plan.stdout, plan.stdout


def test_lookup_by_name_says_which_context_could_not_be_asked(tmp_path):
    home = tmp_path / "home"
    _context(home, "dead", f"unix://{tmp_path}/nothing.sock")
    _user_config(home, '[secure_engine]\ncontext_name = "dead"\n')
    done = run_cai(home, "stop", "--container", "surely-not-there", cwd=str(tmp_path))
    assert done.returncode == 1
    assert "Container not found" not in done.stderr
    assert done.stderr.splitlines()[0] == "[ERROR] Docker Desktop is not running"
    assert "[ERROR]   Context 'dead' could not be asked, so surely-not-there may be there" in done.stderr.splitlines()


def test_global_flags_after_the_workspace_path_count(tmp_path, tmp_path_factory):
    workspace = agent_workspace(tmp_path_factory, "late-flags-ws")
    done = run_cai(tmp_path / "home", "run", str(workspace), "--context", "nosuch", "--", "true")
    assert done.returncode == 1
    assert done.stderr.splitlines()[1] == "[ERROR]   Docker context not found: nosuch (from --context)"
    done = run_cai(tmp_path / "home", "run", str(workspace), "--verbose", "--dry-run")
    assert done.returncode == 0, done.stderr


# --- ownership and bulk commands --------------------------------------------------------------


def test_stop_all_takes_only_labelled_containers_and_never_helpers(spare_engine, tmp_path):
    """On an engine of the test's own: `stop --all --force` would stop every cai container."""
    spare = spare_engine(6)
    spare.reset()
    home = tmp_path / "home"
    context = spare.add_context(home)
    spare.make_image("containai:latest")
    unlabelled = spare.make("running", name="plain-containai", managed=None, image="containai:latest")
    helper = spare.make("running", name="an-import-helper", managed=None,
                        labels={"containai.helper": "true", "containai.helper.role": "import", "containai.helper.volume": "v"})
    managed = spare.make("running", name="a-workspace")
    done = run_cai(home, "--context", context, "stop", "--all", "--force", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    for container, status in ((unlabelled, "running"), (helper, "running"), (managed, "exited")):
        container.reload()
        assert container.status == status, container.name
    assert "plain-containai" not in done.stdout + done.stderr and "an-import-helper" not in done.stdout + done.stderr


def test_gc_removes_idle_leftover_helpers_and_reports_odd_keep_values(spare_engine, tmp_path):
    import json

    spare = spare_engine(6)
    spare.reset()
    home = tmp_path / "home"
    context = spare.add_context(home)
    helper_labels = {"containai.helper": "true", "containai.helper.role": "import", "containai.helper.volume": "v"}
    idle = spare.make("exited", name="left-idle", managed=None, labels=helper_labels)
    busy = spare.make("running", name="left-busy", managed=None, labels=helper_labels)
    busy.exec_run(["/bin/sleep", "60"], detach=True)  # a swap still running
    spare.make("running", name="left-receiving", managed=None, labels=helper_labels)  # maybe mid put_archive
    for value in ("yes", "1", "TRUE", "maybe"):
        spare.make("exited", name=f"keep-{value.lower()}", labels={"containai.keep": value})
    done = run_cai(home, "--context", context, "gc", "--age", "0m", "--force", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed"]["helpers"] == [idle.id[:12]]
    assert sorted(report["removed"]["containers"]) == ["keep-maybe"]
    assert report["unrecognized_keep"] == [{"name": "keep-maybe", "value": "maybe"}]
    assert "[WARN] keep-maybe: containai.keep=maybe protects nothing (use true, 1 or yes)" in done.stderr.splitlines()
    assert spare.names() == {"left-busy", "left-receiving", "keep-yes", "keep-1", "keep-true"}
