"""Interactive sessions on a real terminal (tmux): PTY, window resize, Ctrl-C and terminal restore."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from conftest import CAI, unique, wait_for


def test_shell_has_a_pty_follows_resize_and_restores_the_terminal(ws, tmux, tmp_path):
    workspace, _ = ws
    before, after = tmp_path / "before", tmp_path / "after"
    tmux.type(f"stty -g > {before}; {CAI} shell {workspace}; echo \"rc=$?\"; stty -g > {after}")
    tmux.type("tty; stty size")
    tmux.wait_for_text(r"^/dev/pts/\d+\n24 80$")
    tmux.resize(100, 30)
    tmux.type("stty size")
    tmux.wait_for_text(r"^30 100$")
    tmux.type("exit 4")
    tmux.wait_for_text(r"^rc=4$")
    wait_for(lambda: after.exists() and after.read_text())
    assert before.read_text() == after.read_text()


def test_terminal_is_restored_when_ssh_is_killed(ws, tmux, tmp_path):
    """ssh puts the terminal in raw mode; killed with SIGKILL it cannot undo that, so cai does."""
    workspace, _ = ws
    before, after = tmp_path / "before", tmp_path / "after"
    marker = unique("killed")
    tmux.type(f"stty -g > {before}; {CAI} exec -w {workspace} -- sh -c 'echo {marker}; sleep 60'; "
              f"echo \"rc=$?\"; stty -g > {after}")
    tmux.wait_for_text(rf"^{marker}$")
    pids = subprocess.run(["pgrep", "-f", f"^ssh .*{marker}"], capture_output=True, text=True).stdout.split()
    assert pids
    subprocess.run(["kill", "-KILL", *pids], check=True)
    tmux.wait_for_text(r"^rc=137$")
    wait_for(lambda: after.exists() and after.read_text())
    assert before.read_text() == after.read_text()


def test_ctrl_c_in_a_pty_exec_gives_130_once(ws, tmux, docker_client):
    workspace, _ = ws
    marker = unique("ctrlc")
    tmux.type(f"{CAI} exec -w {workspace} -- sh -c 'echo x >> {marker}; tty; sleep 60'; echo \"rc=$?\"")
    tmux.wait_for_text(r"^/dev/pts/\d+$")
    tmux.key("C-c")
    tmux.wait_for_text(r"^rc=130$")
    assert (workspace / marker).read_text() == "x\n"
    assert "[WARN]" not in tmux.screen()


def test_image_build_shows_progress_only_on_a_tty(home, docker_client, agent_image):
    base = docker_client.images.get(agent_image).labels["containai.base"]
    tag = f"cai-test-progress:{unique()}"
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    # --no-host-ca: no [WARN] naming this host's certificates
    argv = [sys.executable, "-m", "cai", "image", "build", "--base", base, "--tag", tag, "--no-host-ca"]
    try:
        quiet = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, f"{tag}\n", "")
        primary, secondary = pty.openpty()
        try:
            shown = subprocess.run(argv, stdin=secondary, stdout=secondary, stderr=subprocess.PIPE, env=env, timeout=600)
        finally:
            os.close(secondary)
            os.close(primary)
        assert shown.returncode == 0
        # One line, rewritten in place (bytes: text mode would turn each \r into \n): step N of
        # M, then cleared at the end.
        err = shown.stderr.decode()
        steps = re.findall(r"\r\x1b\[2KStep (\d+) of (\d+): ", err)
        assert steps[0][0] == "1" and steps[-1][0] == steps[-1][1], err
        assert "\n" not in err and err.endswith("\r\x1b[2K")
    finally:
        docker_client.images.remove(tag)
