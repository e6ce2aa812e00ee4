"""Every test gets its own HOME, XDG dirs and docker config dir, and may not leak env changes."""

from __future__ import annotations

import os

import pytest

_ISOLATED = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "CONTAINAI_VERBOSE", "CONTAINAI_DATA_VOLUME",
             "CONTAINAI_SECURE_ENGINE_CONTEXT", "DOCKER_HOST", "DOCKER_CONTEXT")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    original = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("NO_COLOR", "1")
    for var in _ISOLATED:
        monkeypatch.delenv(var, raising=False)
    yield home
    monkeypatch.undo()
    leaked = {k for k in set(original) | set(os.environ)
              if original.get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST"}
    assert not leaked, f"test leaked environment changes: {sorted(leaked)}"
