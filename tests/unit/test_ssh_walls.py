"""Issue 24 §4: a user's `Host *` forwards nothing and runs nothing on the connections cai makes.
Every argv cai builds is read back by the real `ssh -G` against a hostile config."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from cai import ssh

HOSTILE_CONFIG = """\
Host *
    ForwardAgent yes
    ForwardX11 yes
    ForwardX11Trusted yes
    RemoteForward 19999 localhost:22
    LocalForward 19998 localhost:22
    DynamicForward 19997
    Tunnel yes
    PermitLocalCommand yes
    LocalCommand touch /tmp/cai-hostile-local-command
"""


def resolved(argv: list[str], config) -> dict[str, list[str]]:
    """What `ssh -G` makes of cai's argv with `config` as the only config file."""
    assert argv[0] == "ssh"
    done = subprocess.run(["ssh", "-G", "-F", str(config), *argv[1:]], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    options: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return options


def assert_walled(options: dict[str, list[str]]) -> None:
    assert options["forwardagent"] == ["no"]
    assert options["forwardx11"] == ["no"]
    assert options["clearallforwardings"] == ["yes"]
    assert options["permitlocalcommand"] == ["no"]
    assert options["tunnel"] == ["false"]
    for forward in ("localforward", "remoteforward", "dynamicforward"):
        assert forward not in options


@pytest.fixture()
def hostile(tmp_path):
    path = tmp_path / "ssh_config"
    path.write_text(HOSTILE_CONFIG)
    # The config is what a plain ssh would take: without cai's options it forwards and runs.
    plain = resolved(["ssh", "somewhere"], path)
    assert plain["forwardagent"] == ["yes"] and plain["permitlocalcommand"] == ["yes"] and "remoteforward" in plain
    return path


@pytest.mark.parametrize("endpoint", [
    ssh.Endpoint("proj-main", 2301, "cai-default-abc123"),
    ssh.Endpoint("proj-main", 2301, "cai-big-abc123", "me@big:2222"),
    ssh.Endpoint("proj-main", 2301, "cai-build-abc123", None, ["docker", "--context", "build", "exec", "-i", "x", "sshd", "-i"]),
], ids=["local", "ssh-engine", "tcp-engine"])
def test_sessions_captured_runs_and_copies_take_nothing_from_host_star(hostile, endpoint, monkeypatch):
    # base_argv is the head of run_session, release_master and cai cp's sessions.
    assert_walled(resolved([*ssh.base_argv(endpoint), ssh.HOST, "true"], hostile))
    ran: list[list[str]] = []
    monkeypatch.setattr(ssh.proc, "run_bounded", lambda argv, **_: ran.append(list(argv)) or ssh.proc.Result(0, "", ""))
    ssh.run_captured(endpoint, "true", timeout=5, limit=1024)
    assert_walled(resolved(ran[0], hostile))


def test_the_jump_to_an_ssh_engine_takes_nothing_from_host_star(hostile):
    endpoint = ssh.Endpoint("proj-main", 2301, "cai-big-abc123", "me@big:2222")
    # As readiness runs it, and as ssh runs the ProxyCommand of a session (the same words).
    assert_walled(resolved(ssh.proxy_words(endpoint, 2301), hostile))
    proxy = shlex.split(ssh.proxy_command(endpoint, keep_stderr=True))
    assert proxy == ssh.proxy_words(endpoint)
    assert_walled(resolved([word.replace("%h:%p", "127.0.0.1:2301") for word in proxy], hostile))


@pytest.mark.parametrize("port, socket_path", [(None, None), ("2222", "/run/user/1000/docker.sock")])
def test_the_engine_dial_takes_nothing_from_host_star(hostile, port, socket_path):
    assert_walled(resolved(ssh.engine_dial_argv("me@big", port, socket_path), hostile))


def test_name_conf_leaves_the_users_own_ssh_alone_but_the_agent(isolated_home):
    conf = ssh.write_host_config(ssh.Endpoint("proj-main", 2301, "cai-default-abc123")).read_text()
    assert "    ForwardAgent no\n" in conf
    for option in ("ForwardX11", "ClearAllForwardings", "PermitLocalCommand"):
        assert option not in conf


def test_a_run_without_cais_master_uses_no_master_of_the_users(tmp_path, monkeypatch):
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    ControlMaster auto\n    ControlPath {tmp_path}/cm-%C\n    ControlPersist 600\n")
    endpoint = ssh.Endpoint("proj-main", 2301, "cai-default-abc123")
    ran: list[list[str]] = []
    monkeypatch.setattr(ssh.proc, "run_bounded", lambda argv, **_: ran.append(list(argv)) or ssh.proc.Result(0, "", ""))
    ssh.run_captured(endpoint, "true", timeout=5, limit=1024)
    monkeypatch.setenv("CAI_SSH_MULTIPLEX", "0")

    class Stop(Exception):
        pass

    def popen(argv, **_):
        ran.append(list(argv))
        raise Stop

    monkeypatch.setattr(ssh.subprocess, "Popen", popen)
    with pytest.raises(Stop):
        ssh.run_session(endpoint, "true", tty=None, shared=True)
    monkeypatch.undo()
    assert len(ran) == 2
    for argv in ran:
        if "-E" in argv:  # ssh -G would not write the session's log
            at = argv.index("-E")
            del argv[at:at + 2]
        options = resolved(argv, config)
        assert options["controlmaster"] == ["false"] and "controlpath" not in options
    # cai's own sharing still wins where it is on.
    directory = tmp_path / "cai"
    directory.mkdir(mode=0o700)
    shared = resolved([*ssh.base_argv(endpoint), *ssh.multiplex_options(directory, endpoint), ssh.HOST], config)
    assert shared["controlmaster"] == ["auto"] and shared["controlpath"][0].startswith(str(directory))
