"""The walls between cai's layers (pyproject.toml's [tool.importlinter] contracts) hold, and the
check finds an arrow that breaks one: an upward import, policy in the engine layer, a circle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package under `root`, with this checkout's contracts."""
    return subprocess.run([str(LINT), "--no-cache", "--no-logo", str(REPO / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_walls_hold():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("engine.py", "from cai import config", "cai.engine is not allowed to import cai.config"),
    ("ssh.py", "from cai import labels", "cai.ssh is not allowed to import cai.labels"),
    ("containers.py", "from cai.commands import exec", "cai.containers is not allowed to import cai.commands"),
    ("volumes.py", "from cai import containers", "No circles between cai's modules BROKEN"),
])
def test_a_new_arrow_that_breaks_a_wall_fails(tmp_path, module, line, broken):
    shutil.copytree(REPO / "cai", tmp_path / "cai", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "cai" / module, "a") as fh:
        fh.write(f"\n\ndef _new_arrow():\n    {line}  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout
