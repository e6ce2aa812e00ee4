from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cai.commands import COMMANDS, build_parser, completion
from cai.main import cli

REPO = Path(__file__).resolve().parents[2]
COMMITTED = {"bash": REPO / "completions" / "cai.bash", "zsh": REPO / "completions" / "_cai"}


def run_cli(capsys, *argv):
    code = cli(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_committed_scripts_are_what_the_cli_generates(capsys, shell):
    code, out, err = run_cli(capsys, "completion", shell)
    assert (code, err) == (0, "")
    assert out == COMMITTED[shell].read_text(), \
        f"completions/ is stale: run `cai completion {shell} > {COMMITTED[shell].relative_to(REPO)}`"


@pytest.mark.parametrize("shell", ["fish", "powershell", "BASH", "-"])
def test_other_shells_are_refused(capsys, shell):
    code, out, err = run_cli(capsys, "completion", shell)
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"[ERROR] Unknown shell: {shell}", "Supported shells: bash, zsh"]


@pytest.mark.parametrize("argv", [["completion"], ["completion", "--help"], ["completion", "-h"]])
def test_no_shell_prints_the_help(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert out.startswith("usage: cai completion")
    assert "source <(cai completion bash)" in out


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _public_options(parser):
    return [opt for action in parser._actions if action.help != argparse.SUPPRESS for opt in action.option_strings]


def test_bash_script_lists_exactly_the_parsers_commands_and_flags():
    text = COMMITTED["bash"].read_text()
    top = re.search(r"^_shtab_cai_subparsers=\((.*)\)$", text, re.MULTILINE)
    assert top and top[1].split() == list(COMMANDS)
    for name, sub in _subparsers(build_parser()).choices.items():
        found = re.search(rf"^_shtab_cai_{name.replace('-', '_')}_option_strings=\((.*)\)$", text, re.MULTILINE)
        assert found, name
        assert found[1].split() == _public_options(sub), name
    assert "--name" not in re.search(r"^_shtab_cai_stop_option_strings=\((.*)\)$", text, re.MULTILINE)[1].split()


def test_value_completions_are_attached_to_every_such_flag():
    parser = build_parser()
    completion._mark(parser)
    seen = {}

    def walk(p):
        for action in p._actions:
            sub = _subparsers(p) if isinstance(action, argparse._SubParsersAction) else None
            if sub is not None:
                for child in sub.choices.values():
                    walk(child)
            for opt in action.option_strings:
                seen.setdefault(opt, set()).add(repr(getattr(action, "complete", None)))

    walk(parser)
    assert seen["--container"] == {repr(completion._CONTAINERS)}
    for flag in ("-w", "--workspace", "-o", "--output", "--config", "--from"):
        assert "None" not in seen[flag], flag


def test_completion_imports_nothing_heavy():
    probe = ("import sys\nfrom cai.main import cli\ncli(['completion', 'bash'])\n"
             "heavy = sorted(m for m in ('docker', 'requests', 'paramiko', 'questionary', 'dateutil') if m in sys.modules)\n"
             "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert "HEAVY=\n" in done.stderr, done.stderr
