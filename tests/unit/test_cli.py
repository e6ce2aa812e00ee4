from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai import __version__
from cai.main import COMMANDS, cli


def run_cli(capsys, *argv):
    code = cli(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert (code, out.strip()) == (0, f"cai {__version__}")


def test_help_lists_every_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name in COMMANDS:
        assert f"    {name} " in out


@pytest.mark.parametrize(
    ("argv", "first_line", "hint"),
    [
        (["doctor", "--bogus"], "[ERROR] Unknown option: --bogus", "Use 'cai doctor --help' for usage"),
        (["doctor", "stray"], "[ERROR] Unexpected argument: stray", "Use 'cai doctor --help' for usage"),
        (["doctor", "--json", "--json"], "[ERROR] --json was given more than once", "Use 'cai doctor --help' for usage"),
        (["--context"], "[ERROR] --context requires a value", "Use 'cai --help' for usage"),
        (["--context", "a", "--context", "b", "doctor"], "[ERROR] --context was given more than once", "Use 'cai --help' for usage"),
        (["nosuchcommand"], "[ERROR] Argument COMMAND: invalid choice: 'nosuchcommand'", None),
        (["image"], "[ERROR] Missing required argument: ACTION", "Use 'cai image --help' for usage"),
        (["--doc"], "[ERROR] Unknown option: --doc", "Use 'cai --help' for usage"),
        (["stop", "--container", "a", "--all"], "[ERROR] --container and --all are mutually exclusive", None),
        (["stop", "--all", "--export"], "[ERROR] --export and --all are mutually exclusive", None),
        (["stop", "--name", "x"], "[ERROR] --name is no longer supported. Use --container instead.", None),
        (["stop", "--container"], "[ERROR] --container requires a value", "Use 'cai stop --help' for usage"),
        (["stop", "--container", "--all"], "[ERROR] --container requires a value", "Use 'cai stop --help' for usage"),
        (["status", "--container", "a", "--workspace", "/"], "[ERROR] --container and --workspace are mutually exclusive", None),
        (["status", "extra"], "[ERROR] Unexpected argument: extra", "Use 'cai status --help' for usage"),
        (["ssh", "cleanup", "--bogus"], "[ERROR] Unknown option: --bogus", "Use 'cai ssh cleanup --help' for usage"),
    ],
)
def test_usage_errors_exit_1(capsys, argv, first_line, hint):
    code, out, err = run_cli(capsys, *argv)
    lines = err.splitlines()
    assert code == 1
    assert out == ""
    assert lines[0].startswith(first_line)
    if hint:
        assert lines[1] == hint
    assert "Traceback" not in err


def test_no_command_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0 and "commands:" in out


@pytest.mark.parametrize("bad", ["-x", "a;b", "naïve", "c" * 300, "", "bad\nname"])
def test_hostile_context_names(capsys, bad):
    code, _, err = run_cli(capsys, f"--context={bad}", "doctor")
    assert code == 1
    assert "Traceback" not in err
    assert err.startswith("[ERROR] Invalid context name") or "requires a value" in err


def test_help_and_completion_stay_cheap():
    """`cai --help` in a fresh interpreter must not import the heavy packages."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['cai', '--help']\n"
        "try:\n    runpy.run_module('cai', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('docker', 'requests', 'paramiko', 'questionary', 'prompt_toolkit', 'plumbum', 'dateutil') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert "HEAVY=\n" in done.stderr, done.stderr


# --- no traceback for any argv -----------------------------------------------------------------

_WORDS = [*COMMANDS, "build", "--json", "--verbose", "-q", "--quiet", "-D", "--context", "--base", "--tag",
          "--", "-", "--help", "-h", "--version", "--context=", "=", "x", "containai:latest"]


@pytest.fixture()
def unreachable_engine(isolated_home, monkeypatch):
    """The dedicated context points at a socket nobody listens on, so nothing reaches a real engine."""
    meta_dir = isolated_home / ".docker" / "contexts" / "meta"
    import hashlib

    target = meta_dir / hashlib.sha256(b"containai-docker").hexdigest()
    target.mkdir(parents=True)
    (target / "meta.json").write_text(json.dumps({
        "Name": "containai-docker", "Metadata": {},
        "Endpoints": {"docker": {"Host": f"unix://{isolated_home}/no.sock", "SkipTLSVerify": False}},
    }))
    monkeypatch.setattr(os, "execve", lambda *a: (_ for _ in ()).throw(OSError("execve blocked in tests")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(_WORDS), st.text(max_size=30)), max_size=6))
def test_no_traceback_for_any_argv(unreachable_engine, capsys, argv):
    if argv and argv[0] == "docker" or "docker" in argv[:3]:
        argv = [a for a in argv if a != "docker"]
    code = cli(argv)
    captured = capsys.readouterr()
    assert isinstance(code, int) and 0 <= code <= 255
    assert "Traceback" not in captured.err
    assert "[ERROR] Unexpected error" not in captured.err
