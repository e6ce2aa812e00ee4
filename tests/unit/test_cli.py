from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai import __version__
from cai.commands import COMMANDS, build_parser
from cai.main import cli


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


# --- the lifecycle verbs' pure parts ------------------------------------------------------------


@pytest.mark.parametrize(("word", "name"), [("KILL", ("KILL", 9)), ("term", ("TERM", 15)), ("SIGHUP", ("HUP", 1)),
                                            ("15", ("TERM", 15)), ("usr1", ("USR1", 10)), ("10", ("USR1", 10)),
                                            ("SIGRTMIN+3", ("RTMIN+3", 37)), ("rtmax-1", ("RTMAX-1", 63)), ("64", ("RTMAX-0", 64))])
def test_signals_by_linux_name_or_number(word, name):
    """Linux's table, whatever the client's OS numbers its own (10 is USR1, not macOS's BUS)."""
    from cai.commands.kill import signal_name

    assert signal_name(word) == name


@pytest.mark.parametrize("word", ["NOPE", "0", "99999", "-9", "１５", "", "32", "RTMIN-1", "RTMAX+1"])
def test_unknown_signals_are_refused(word):
    from cai.commands.kill import signal_name
    from cai.errors import CaiError

    with pytest.raises(CaiError) as refused:
        signal_name(word)
    assert refused.value.message == f"Invalid signal: {word}"


def test_templates_print_fields_json_and_missing_keys():
    from cai import templates

    document = {"Name": "p", "State": {"Status": "running", "Pid": 7}, "Flag": True, "Labels": {"a": "b"}}
    rendered = templates.Template(r"{{.Name}}\t{{.State.Status}} {{.State.Pid}} {{.Flag}} {{json .Labels}} {{.Nope.X}}")
    assert rendered.render(document) == 'p\trunning 7 true {"a": "b"} <no value>'
    assert templates.Template("{{json .}}").render({"x": 1}) == '{"x": 1}'


@pytest.mark.parametrize("text", ["{{range .X}}", "{{.X", "{{ .X | upper }}", "{{index .A 0}}"])
def test_templates_refuse_what_they_do_not_support(text):
    from cai import templates
    from cai.errors import CaiError

    with pytest.raises(CaiError):
        templates.Template(text)


def test_ps_filters_map_to_the_engines_and_cais_own(tmp_path):
    from cai import listing

    # A workspace is normalised as cai labels it (an existing directory, symlinks resolved).
    assert listing.parse_filters(["status=exited", "label=team=x", "name=proj", f"workspace={tmp_path}/"]) == {
        "status": ["exited"], "label": ["team=x", f"containai.workspace={tmp_path.resolve()}"], "name": ["proj"]}


@pytest.mark.parametrize("word", ["colour=red", "status=sleeping", "label=containai.managed=false", "name="])
def test_ps_refuses_bad_filters(word):
    from cai import listing
    from cai.errors import CaiError

    with pytest.raises(CaiError):
        listing.parse_filters([word])


def test_run_options_parse_and_refuse():
    from cai import run_options
    from cai.errors import CaiError

    assert run_options.parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert run_options.parse_restart("no") == {"Name": "", "MaximumRetryCount": 0}
    assert run_options.parse_labels(["team=", "x=y=z", "containai.keep=true"]) == {"team": "", "x": "y=z",
                                                                                    "containai.keep": "true"}
    assert run_options.parse_environment(["A=", "B=c=d"]) == {"A": "", "B": "c=d"}
    for bad in (lambda: run_options.parse_labels(["ai.containai.template=x"]),
                lambda: run_options.parse_environment(["A=\udcff"]),  # a non-UTF-8 argv byte
                lambda: run_options.parse_environment(["NOEQUALS"]),
                lambda: run_options.parse_restart("unless-stopped:2")):
        with pytest.raises(CaiError):
            bad()


def test_the_profile_script_exports_each_value_as_given(tmp_path):
    import subprocess
    import tarfile
    import io

    from cai import run_options

    values = {"A": "it's $HOME `x`", "B": "two\nlines"}
    # For the agent (uid 1000) only; anyone else's login shell returns at once.
    with tarfile.open(fileobj=io.BytesIO(run_options.profile_archive(values))) as tar:
        script = tar.extractfile("profile.d/containai-env.sh").read().decode()
        assert tar.getmember("profile.d/containai-env.sh").mode == 0o644
    as_agent = script.replace('[ "$(id -u)" = 1000 ]', "true")
    done = subprocess.run(["sh", "-c", as_agent + 'printf "%s|%s" "$A" "$B"'], capture_output=True, text=True, timeout=10)
    assert done.stdout == "it's $HOME `x`|two\nlines"
    as_root = subprocess.run(["sh", "-c", f'f() {{ {script} }}; f; printf "%s" "${{A-unset}}"'], capture_output=True,
                             text=True, timeout=10)
    assert as_root.stdout == "unset"  # this test runs as root


def test_an_empty_ps_table_is_its_header():
    from cai import listing

    assert listing.table([], with_context=False) == ["NAME  STATE  WORKSPACE  IMAGE  SSH PORT  UP / AGE  SESSIONS  AGENT"]


@pytest.mark.parametrize("text", ["3000w", "1970-01-01T00:00:00Z", "yesterday", "10x"])
def test_since_before_1970_or_unreadable_is_refused(text):
    from cai import clock
    from cai.errors import CaiError

    with pytest.raises(CaiError) as refused:
        clock.parse_since(text, 1_800_000_000)
    assert refused.value.message.startswith("Invalid --since value")


def test_since_is_a_time_or_a_duration_back_from_now():
    from cai import clock

    assert clock.parse_since("90s", 1_800_000_000) == 1_800_000_000 - 90
    assert clock.parse_since("1d12h", 1_800_000_000) == 1_800_000_000 - 36 * 3600
    assert clock.parse_since("2026-12-01T10:00:00Z", 0) == 1_796_119_200


def test_the_top_level_summaries_are_each_commands_own():
    """`cai --help` shows SUMMARIES without importing the commands: each command's own parser must
    say the same (build_parser gives it that summary as its help)."""
    import argparse

    from cai.commands import SUMMARIES

    full = build_parser()
    action = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert {choice.dest: choice.help for choice in action._choices_actions} == SUMMARIES
