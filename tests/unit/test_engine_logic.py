from __future__ import annotations

import socket
import sys

import pytest
import requests

from cai import docker_py, engine
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
    linux_hint = kind == "not_running" and sys.platform.startswith("linux")
    assert len([classified.message, *classified.extra]) == (3 if linux_hint else 2)


def test_messages_match_the_original():
    assert (engine.EngineUnavailable("not_running").message, engine.EngineUnavailable("not_running").extra[:1]) == (
        "Docker Desktop is not running", ("[ERROR]   Start Docker Desktop and try again",))
    # Linux users have no Docker Desktop: a third line says how to start theirs
    assert engine.EngineUnavailable("not_running").extra[1:] == (
        ("[ERROR]   On Linux, start the engine: sudo systemctl start docker (or run dockerd)",)
        if sys.platform.startswith("linux") else ())
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

    found = docker_py.dial_target(url)
    assert (found.destination, found.port, found.socket_path) == target
    argv = ssh.engine_dial_argv(found.destination, found.port, found.socket_path)
    assert argv[argv.index("--"):] == argv_tail
    assert (argv[argv.index("-p") + 1] if "-p" in argv else None) == found.port
    assert "ServerAliveInterval=5" in argv and "BatchMode=yes" in argv


def test_a_tls_failure_is_its_own_class_in_openssls_words():
    import ssl

    refused = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    wrapped = requests.exceptions.SSLError(f"HTTPSConnectionPool(host='h', port=2376): Max retries exceeded with url: "
                                           f"/v1.41/containers/json?all=1 (Caused by SSLError({refused!r}))")
    wrapped.__context__ = refused
    classified = engine.classify(wrapped)
    assert classified.kind == "tls"
    assert classified.extra[-1] == "[ERROR]   [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"


def test_the_contexts_ca_survives_requests_ca_bundle(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    plain, kept = requests.Session(), requests.Session()
    for session in (plain, kept):
        session.verify = "/ctx/ca.pem"
    docker_py.keep_context_ca(kept)
    settings = [s.merge_environment_settings("https://h:2376/v1.41/_ping", {}, None, None, None) for s in (plain, kept)]
    assert [s["verify"] for s in settings] == ["/etc/ssl/certs/ca-certificates.crt", "/ctx/ca.pem"]  # docker-py #2433


class _Engine:
    context = "big"

    def __init__(self, host):
        self.host = host

    def endpoint(self):
        return self.host


@pytest.mark.parametrize(("given", "cleaned"), [("/srv/p/", "/srv/p"), ("//srv/./p", "/srv/p"), ("/srv/q/../p", "/srv/p")])
def test_a_remote_path_is_cleaned_as_docker_stores_it(given, cleaned):
    from cai import containers

    assert containers.remote_path_choice(_Engine("ssh://me@big"), given, None) == cleaned


@pytest.mark.parametrize(("given", "host", "says"), [
    ("srv/p", "ssh://me@big", "--remote-path must be an absolute path on the engine host: srv/p"),
    ("/srv/\np", "ssh://me@big", "--remote-path must be an absolute path on the engine host"),
    ("/", "tcp://big:2376", "--remote-path / would give the agent the engine host's whole filesystem"),
    ("/srv/..", "ssh://me@big", "--remote-path / would give the agent"),
    ("/srv/p", "unix:///var/run/docker.sock", "--remote-path needs a remote engine; context big is on this host"),
])
def test_a_remote_path_that_cannot_be_bound_is_refused(given, host, says):
    from cai import containers
    from cai.errors import CaiError

    with pytest.raises(CaiError) as refused:
        containers.remote_path_choice(_Engine(host), given, None)
    assert refused.value.message.startswith(says) and refused.value.code == 1
