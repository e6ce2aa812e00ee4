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
