"""cai reads Docker contexts where the docker CLI does: $DOCKER_CONFIG/contexts, else
~/.docker/contexts, whatever config files exist or not (issue 26)."""

from __future__ import annotations

import hashlib
import json

import pytest

from cai import docker_py, engine


def write_context(store, name: str, host: str) -> None:
    meta = store / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {},
                                                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))


def test_a_legacy_dockercfg_does_not_move_the_store(isolated_home, monkeypatch):
    """docker-py took ~/.dockercfg's directory (HOME itself) for the store: containai-docker
    vanished and cai fell back to default, another engine, for a gc --force from cron."""
    (isolated_home / ".dockercfg").write_text("{}")
    write_context(isolated_home / ".docker", "containai-docker", "unix:///run/containai.sock")
    monkeypatch.delenv("DOCKER_CONFIG")  # the harness sets it; this user has none
    assert engine.context_endpoint("containai-docker") == "unix:///run/containai.sock"


def test_docker_config_without_a_config_json_is_still_the_store(isolated_home, tmp_path, monkeypatch):
    """The CLI reads $DOCKER_CONFIG/contexts even when that directory has no config.json; docker-py
    went on to ~/.docker/config.json and read another store."""
    (isolated_home / ".docker").mkdir(exist_ok=True)
    (isolated_home / ".docker" / "config.json").write_text("{}")
    write_context(isolated_home / ".docker", "work", "unix:///run/home-store.sock")
    elsewhere = tmp_path / "docker-config"
    write_context(elsewhere, "work", "unix:///run/docker-config-store.sock")
    monkeypatch.setenv("DOCKER_CONFIG", str(elsewhere))
    assert engine.context_endpoint("work") == "unix:///run/docker-config-store.sock"


@pytest.fixture(autouse=True)
def fresh_sdk_state(monkeypatch):
    monkeypatch.setattr(docker_py, "_sdk_ready", False)
