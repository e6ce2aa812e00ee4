"""What `cai --help`, `cai exec --help` and a warm `cai exec` import, counted against a short
allow-list: a count, not a time, so it holds on a noisy machine, and it fails when a heavy module
(docker, typing, dataclasses, shutil, hashlib, …) creeps onto one of these paths.

Run with `python -S` (no site, so neither an editable install's finder nor site-packages loads
anything) from the checkout; the baseline is what argparse itself imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASELINE = "import sys, argparse, contextlib, io"
OWN = {"__future__", "cai", "cai.argparsing", "cai.commands", "cai.errors", "cai.main", "cai.output", "locale",
       "_locale", "textwrap", "errno"}
HELP = OWN
EXEC_HELP = OWN | {"cai.commands._target", "cai.commands.exec", "cai.labels"}
WARM_EXEC = EXEC_HELP | {
    "cai.config", "cai.layout", "cai.proc", "cai.reach", "cai.ssh", "cai.userfiles",
    "subprocess", "_posixsubprocess", "selectors", "select", "threading", "_weakrefset", "signal", "fcntl", "math",
    "collections.abc", "shlex", "zlib",  # ssh's session, its control socket's name
    "json", "json.decoder", "json.encoder", "json.scanner", "_json",  # reach's cache
    "pathlib", "fnmatch", "ntpath", "urllib", "urllib.parse", "ipaddress",  # config's and ssh's paths
}
HEAVY = {"typing", "dataclasses", "inspect", "shutil", "hashlib", "docker", "requests", "urllib3", "tarfile", "lzma",
         "bz2", "tempfile", "importlib.metadata", "datetime", "dateutil", "questionary", "shtab", "enum"}


def imported(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert done.returncode == 0, done.stderr
    return set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))


BASE = None


def extra(code: str) -> set[str]:
    global BASE
    if BASE is None:
        BASE = imported(f"{BASELINE}; print(sorted(sys.modules))")
    return imported(code) - BASE


def cli_modules(*argv: str) -> str:
    return f"""{BASELINE}
from cai import main
with contextlib.redirect_stdout(io.StringIO()):
    main.cli({list(argv)!r})
print(sorted(sys.modules))"""


def test_top_level_help_builds_no_command_module():
    found = extra(cli_modules("--help"))
    assert found <= HELP, sorted(found - HELP)


def test_version_imports_nothing_of_cai_beyond_main():
    found = extra(cli_modules("--version"))
    assert found <= {"__future__", "cai", "cai.main"}, sorted(found)


def test_a_commands_help_builds_that_command_only():
    found = extra(cli_modules("exec", "--help"))
    assert found <= EXEC_HELP, sorted(found - EXEC_HELP)


def test_a_warm_exec_imports_what_it_uses_only():
    """reach's cache answers and ssh runs over the shared connection: no engine, no docker-py."""
    code = f"""{BASELINE}
import os
from cai import main, reach, ssh
reach.lookup = lambda key: ssh.Endpoint("x", 2300, "alias")
def session(endpoint, remote, *, tty, shared=False):
    print(sorted(sys.modules), flush=True)
    os._exit(0)
ssh.run_session = session
os.environ["CAI_SSH_MULTIPLEX"] = "1"
main.cli(["exec", "--", "true"])"""
    found = extra(code)
    assert found <= WARM_EXEC, sorted(found - WARM_EXEC)
    assert not found & HEAVY


def test_the_allow_lists_hold_nothing_heavy():
    assert not (HELP | EXEC_HELP | WARM_EXEC) & HEAVY
