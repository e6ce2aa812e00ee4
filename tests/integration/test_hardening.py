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

from conftest import agent_workspace, run_cai, unique


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
        done = run_cai(spaced_home, "run", str(workspace), env=env)
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
        done = run_cai(home, "run", str(workspace))
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
    done = run_cai(home, "run", str(workspace))
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
    done = run_cai(home, "run", str(workspace))
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
    done = run_cai(tmp_path / "home", "run", str(workspace), env={"PATH": str(bin_dir)})
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
        "[ERROR] Invalid volume name: bad/name",
        "[ERROR] Volume names must start with alphanumeric and contain only [a-zA-Z0-9_.-]"])
    foreign = make_container(image="containai:latest", labels={"containai.managed": "false"})
    done = run_cai(home, "exec", "--container", foreign.name, "--", "true")
    assert (done.returncode, done.stderr.splitlines()) == (15, [
        f"[ERROR] Container {foreign.name} exists but is not managed by ContainAI",
        "[HINT] Remove the conflicting container or use a different name"])
    _, name = ws
    status = run_cai(home, "status", "--container", name)
    memory = [line for line in status.stdout.splitlines() if line.strip().startswith("Memory:")]
    assert len(memory) == 1 and memory[0].endswith("%)") and "." not in memory[0].rsplit("(", 1)[1], memory
