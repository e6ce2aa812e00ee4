from __future__ import annotations

import shlex
import subprocess

import pytest

from cai import containers, docker_py, ssh


def _inner(remote: str) -> str:
    """The script handed to `bash -lc` inside the remote command string."""
    lexer = shlex.shlex(remote, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    return tokens[tokens.index("-lc") + 1]


@pytest.mark.parametrize(
    "argv",
    [["printf", "%s|", "a b", "it's", "$HOME", "*", ""], ["--help"], ["echo", "\"'\\`$(x)"]],
)
def test_remote_command_is_bash_lc_with_leading_space(argv):
    inner = _inner(ssh.remote_exec_command(argv))
    assert inner.startswith(" ")
    assert shlex.split(inner) == argv


def test_leading_assignments_stay_assignments():
    remote = ssh.remote_exec_command(["FOO=x y", "BAR=1", "printenv", "FOO", "X=not-an-assignment"])
    inner = _inner(remote)
    assert inner == " FOO='x y' BAR=1 printenv FOO X=not-an-assignment"


def test_quoted_words_are_what_bash_reads():
    argv = ["printf", "%s|", "a b", "it's", "$HOME", "*", "", "-x"]
    inner = _inner(ssh.remote_exec_command(argv))
    done = subprocess.run(["bash", "-c", inner], capture_output=True, text=True)
    assert done.stdout == "a b|it's|$HOME|*||-x|"


def test_host_listening_ports(tmp_path):
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:0900 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:08FC 0100007F:9C40 01 00000000:00000000\n"
    )
    assert containers.host_listening_ports([str(table), str(tmp_path / "missing")]) == {0x0900}


def test_host_key_aliases_are_per_engine_and_container():
    assert ssh.host_key_alias("default", "0123456789abcdef0123") == "cai-default-0123456789ab"
    assert ssh.host_key_alias("remote", "0123456789abcdef0123") != ssh.host_key_alias("default", "0123456789abcdef0123")


def test_control_sockets_are_short_and_per_endpoint(tmp_path):
    long_context = ssh.Endpoint("n", 2345, ssh.host_key_alias("c" * 64, "0123456789ab"))
    assert len(ssh.control_path(tmp_path, long_context).name) == 16 + len("-2345")
    assert ssh.control_path(tmp_path, long_context).name.endswith("-2345")
    assert ssh.control_path(tmp_path, ssh.Endpoint("n", 1, "cai-a-1")) != ssh.control_path(tmp_path, ssh.Endpoint("n", 1, "cai-b-1"))


@pytest.mark.parametrize(("path", "value"), [("/home/dev user/k", '"/home/dev user/k"'), ("/x/50%off", '"/x/50%%off"')])
def test_paths_in_ssh_config_are_quoted_and_escaped(path, value):
    assert ssh.config_path_value(path) == value


@pytest.mark.parametrize(("script", "status"), [("exit 7", 7), ("kill -TERM $$", 143), ("kill -KILL $$", 137)])
def test_remote_wrapper_reports_signals_as_128_plus_n(tmp_path, script, status):
    """The wrapper, run by a local bash with the workdir swapped for a temp dir."""
    remote = ssh.remote_exec_command(["sh", "-c", f"echo out; echo err >&2; {script}"]).replace(ssh.WORKDIR, str(tmp_path), 1)
    done = subprocess.run(["bash", "-c", remote], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (status, "out\n", "err\n")


def test_remote_wrapper_leaves_the_command_no_extra_fd(tmp_path):
    remote = ssh.remote_exec_command(["ls", "/proc/self/fd"]).replace(ssh.WORKDIR, str(tmp_path), 1)
    done = subprocess.run(["bash", "-c", remote], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert sorted(done.stdout.split()) == ["0", "1", "2", "3"]  # 3 is ls's own directory handle


@pytest.mark.parametrize("jump, split", [
    ("root@10.0.0.2", ("root@10.0.0.2", None)),
    ("me@big:2222", ("me@big", "2222")),
    ("root@[fd00::2]:2222", ("root@fd00::2", "2222")),
])
def test_the_jump_is_read_as_the_engines_dial_reads_it(jump, split):
    assert ssh._split_jump(jump) == split
    target = docker_py.dial_target(f"ssh://{jump}")
    assert (target.destination, target.port) == split


def test_a_tcp_engines_bridge_is_a_literal_proxy_command_in_name_conf(isolated_home):
    bridge = ["/opt/my docker/100%/docker", "--context", "build", "exec", "-i", "abc123", "/usr/sbin/sshd", "-i"]
    endpoint = ssh.Endpoint("proj-main", 2301, "cai-build-abc123", None, bridge)
    command = ssh.proxy_command(endpoint, "/run/cai/log-1-jump")
    # ssh hands the value to a shell after expanding %-tokens: the words come back as they were.
    assert shlex.split(command.replace("%%", "%").rsplit(" 2>", 1)[0]) == bridge
    assert command.endswith(" 2>/run/cai/log-1-jump") and "%%" in command
    conf = ssh.write_host_config(endpoint).read_text()
    assert f"    ProxyCommand {ssh.proxy_command(endpoint, keep_stderr=True)}\n" in conf
    assert "ProxyJump" not in conf and "2>" not in conf
    assert ssh.proxy_words(endpoint, 2301) == bridge  # readiness runs the same bridge


def test_a_jump_keeps_its_forward_tokens_for_ssh_and_spells_them_out_for_readiness():
    endpoint = ssh.Endpoint("n", 2301, "cai-big-1", "me@big:2222")
    assert ssh.proxy_words(endpoint)[-2:] == ["--", "me@big"] and "%h:%p" in ssh.proxy_words(endpoint)
    assert f"{ssh.HOST}:2301" in ssh.proxy_words(endpoint, 2301)
    assert "%h:%p" in ssh.proxy_command(endpoint) and "%%" not in ssh.proxy_command(endpoint)
