from __future__ import annotations

import shlex
import subprocess

import pytest

from cai import containers, ssh


@pytest.mark.parametrize(
    "argv",
    [["printf", "%s|", "a b", "it's", "$HOME", "*", ""], ["--help"], ["echo", "\"'\\`$(x)"]],
)
def test_remote_command_is_bash_lc_with_leading_space(argv):
    inner = shlex.split(ssh.remote_exec_command(argv).split(" && ", 1)[1])
    assert inner[:2] == ["bash", "-lc"]
    assert inner[2].startswith(" ")
    assert shlex.split(inner[2]) == argv


def test_leading_assignments_stay_assignments():
    remote = ssh.remote_exec_command(["FOO=x y", "BAR=1", "printenv", "FOO", "X=not-an-assignment"])
    inner = shlex.split(remote.split(" && ", 1)[1])[2]
    assert inner == " FOO='x y' BAR=1 printenv FOO X=not-an-assignment"


def test_quoted_words_are_what_bash_reads():
    argv = ["printf", "%s|", "a b", "it's", "$HOME", "*", "", "-x"]
    inner = shlex.split(ssh.remote_exec_command(argv).split(" && ", 1)[1])[2]
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


def test_host_spec():
    assert ssh.host_spec(22) == "127.0.0.1"
    assert ssh.host_spec(2301) == "[127.0.0.1]:2301"
