"""Every example in docs/aliases.md, run in bash with the aliases defined, against a real container."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "aliases.md"


def definitions() -> str:
    return re.search(r"```bash\n(.*?)```", DOC.read_text(), re.DOTALL)[1]


def examples() -> list[tuple[str, str]]:
    found = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.DOTALL):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, expected = chunk.partition("\n")
            found.append((command, expected))
    return found


@pytest.fixture(scope="module")
def cai_bin(tmp_path_factory):
    """`cai` on PATH for the aliases: this checkout's, through the test interpreter."""
    bin_dir = tmp_path_factory.mktemp("alias-bin")
    (bin_dir / "cai").write_text(f"#!/bin/sh\nexec {sys.executable} -m cai \"$@\"\n")
    (bin_dir / "cai").chmod(0o755)
    return bin_dir


def test_the_doc_has_examples_for_every_alias():
    names = set(re.findall(r"^(?:alias (\w+)=|(\w+)\(\) \{)", definitions(), re.MULTILINE))
    names = {a or b for a, b in names}
    used = {command.split()[0] for command, _ in examples()}
    assert names and names <= used, names - used


@pytest.mark.parametrize("command, expected", examples(), ids=[c for c, _ in examples()])
def test_example(command, expected, home, ws, cai_bin):
    workspace, _ = ws
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"),
           "PATH": f"{cai_bin}:{os.environ['PATH']}"}
    env.pop("XDG_CONFIG_HOME", None)
    script = "shopt -s expand_aliases\n" + definitions() + "\n" + command + "\n"
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          env=env, cwd=workspace, stdin=subprocess.DEVNULL, timeout=120)
    assert done.stdout == expected, done.stderr
