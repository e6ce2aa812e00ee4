"""Interactive sessions on a real terminal (tmux): PTY, window resize, Ctrl-C and terminal restore."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

from conftest import unique, wait_for

CAI = f"{sys.executable} -m cai"


class Tmux:
    """One tmux server and window running a plain bash, with the test's HOME."""

    def __init__(self, home, width=80, height=24):
        self.socket = unique("cai-tmux")
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), "PS1": "$ ", "TERM": "xterm"}
        env.pop("XDG_CONFIG_HOME", None)
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                   "bash --norc --noprofile", env=env)

    def _tmux(self, *args, env=None):
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=30, env=env)

    def type(self, line):
        self._tmux("send-keys", "-t", "t", "-l", line)
        self._tmux("send-keys", "-t", "t", "Enter")

    def key(self, name):
        self._tmux("send-keys", "-t", "t", name)

    def resize(self, width, height):
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def screen(self):
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t").stdout

    def wait_for_text(self, pattern, timeout=60):
        return wait_for(lambda: re.search(pattern, self.screen(), re.MULTILINE), timeout=timeout, interval=0.1)

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture()
def tmux(home):
    session = Tmux(home)
    yield session
    session.close()


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
    argv = [sys.executable, "-m", "cai", "image", "build", "--base", base, "--tag", tag]
    try:
        quiet = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, f"{tag}\n", "")
        primary, secondary = pty.openpty()
        try:
            shown = subprocess.run(argv, stdin=secondary, stdout=secondary, stderr=subprocess.PIPE, text=True, env=env,
                                   timeout=600)
        finally:
            os.close(secondary)
            os.close(primary)
        assert shown.returncode == 0
        assert re.search(r"^Step 1/\d+ : ARG BASE", shown.stderr, re.MULTILINE), shown.stderr
    finally:
        docker_client.images.remove(tag)
