from __future__ import annotations

import socket

import pytest
import requests

from cai import engine
from cai.commands.docker import exec_container_token


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.exceptions.ReadTimeout("Read timed out."), "timeout"),
        (requests.exceptions.ConnectionError(PermissionError(13, "Permission denied")), "permission"),
        (requests.exceptions.ConnectionError(FileNotFoundError(2, "No such file or directory")), "not_running"),
        (requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused")), "not_running"),
        (socket.timeout("timed out"), "timeout"),
        (requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer")), "unknown"),
        (ValueError("bad docker context meta"), "context"),
    ],
)
def test_classify(exc, kind):
    classified = engine.classify(exc)
    assert classified.kind == kind
    assert classified.code == 1
    assert len([classified.message, *classified.extra]) == 2


def test_messages_match_the_original():
    assert (engine.EngineUnavailable("not_running").message, engine.EngineUnavailable("not_running").extra) == (
        "Docker Desktop is not running", ("[ERROR]   Start Docker Desktop and try again",))
    assert engine.EngineUnavailable("no_cli").message == "Docker is not installed or not in PATH"


@pytest.mark.parametrize(
    ("args", "index"),
    [
        (["exec", "c1", "id"], 1),
        (["exec", "-it", "c1", "bash"], 2),
        (["exec", "-e", "A=1", "--workdir", "/", "c1", "id"], 5),
        (["exec", "--env=A=1", "c1"], 2),
        (["exec", "-u", "root", "c1"], None),
        (["exec", "--user=root", "c1"], None),
        (["ps"], None),
        (["exec"], None),
    ],
)
def test_exec_container_token(args, index):
    assert exec_container_token(args) == index


def test_docker_argv_pins_context():
    assert engine.docker_argv("ctx", "ps", "-a") == ["docker", "--context", "ctx", "ps", "-a"]
    assert engine.cli_env() == {"DOCKER_HOST": None, "DOCKER_CONTEXT": None}


@pytest.mark.parametrize("url, target, argv_tail", [
    ("ssh://me@big", ("me@big", None, None), ["--", "me@big", "docker system dial-stdio"]),
    ("ssh://me@big:2222", ("me@big", "2222", None), ["--", "me@big", "docker system dial-stdio"]),
    ("ssh://big/run/user/1000/docker.sock", ("big", None, "/run/user/1000/docker.sock"),
     ["--", "big", "docker --host unix:///run/user/1000/docker.sock system dial-stdio"]),
    ("ssh://root@[fd00::2]:22", ("root@fd00::2", "22", None), ["--", "root@fd00::2", "docker system dial-stdio"]),
])
def test_an_ssh_engine_is_dialled_as_its_url_says(url, target, argv_tail):
    """No port unless the URL names one (the ssh config's Port then applies), and the socket path
    of this URL: docker-py's own parser adds :22 and drops the path."""
    from cai import ssh

    found = engine.dial_target(url)
    assert (found.destination, found.port, found.socket_path) == target
    argv = ssh.engine_dial_argv(found.destination, found.port, found.socket_path)
    assert argv[argv.index("--"):] == argv_tail
    assert (argv[argv.index("-p") + 1] if "-p" in argv else None) == found.port
    assert "ServerAliveInterval=5" in argv and "BatchMode=yes" in argv
