"""doctor against the real engine, and which context every command resolves to."""

from __future__ import annotations

import json

from conftest import create_context


def test_doctor_text_against_real_engine(cai, docker_client, agent_image):
    result = cai("doctor")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    version = docker_client.version()["Version"]
    assert "  Context:    default" in lines
    assert "  Endpoint:   unix:///var/run/docker.sock" in lines
    assert "  Reachable:  yes" in lines
    assert f"  Version:    {version} (API {docker_client.version()['ApiVersion']})" in lines
    assert f"  {agent_image}: present" in lines
    assert result.err == ""


def test_doctor_json(cai, docker_client, agent_image):
    result = cai("doctor", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["schema_version"] == 1
    assert document["ok"] is True
    assert document["engine"]["reachable"] is True
    assert document["engine"]["version"] == docker_client.version()["Version"]
    assert all(document["tools"][tool] for tool in ("docker", "ssh", "ssh-keygen"))
    assert document["image"] == {"name": agent_image, "present": True}
    assert document["problems"] == []


def test_dedicated_context_is_preferred(cai, docker_client):
    create_context("containai-docker", "unix:///var/run/docker.sock")
    result = cai("doctor", "--json")
    assert json.loads(result.out)["engine"]["context"] == "containai-docker"


def test_ambient_docker_host_is_ignored(cai, docker_client):
    result = cai("doctor", "--json", env={"DOCKER_HOST": "unix:///nonexistent.sock", "DOCKER_CONTEXT": "nosuch"})
    document = json.loads(result.out)
    assert document["engine"]["reachable"] is True
    assert document["engine"]["context"] == "default"


def test_env_context_used_when_it_exists(cai, docker_client):
    create_context("mine", "unix:///var/run/docker.sock")
    result = cai("doctor", "--json", env={"CONTAINAI_SECURE_ENGINE_CONTEXT": "mine"})
    assert json.loads(result.out)["engine"]["context"] == "mine"


def test_missing_configured_context_is_an_error_not_a_fallback(cai, docker_client):
    result = cai("doctor", "--json", env={"CONTAINAI_SECURE_ENGINE_CONTEXT": "notthere"})
    assert result.code == 1
    assert json.loads(result.out)["engine"]["reachable"] is False
    assert "[ERROR]   Docker context not found: notthere (from CONTAINAI_SECURE_ENGINE_CONTEXT)" in result.err_lines
    assert not any(line.startswith("[WARN]") for line in result.err_lines)


def test_invalid_env_context_is_an_error(cai, docker_client):
    result = cai("doctor", "--json", env={"CONTAINAI_SECURE_ENGINE_CONTEXT": "bad name;rm"})
    assert result.code == 1
    assert "[ERROR] Invalid context name: bad name;rm (from CONTAINAI_SECURE_ENGINE_CONTEXT)" in result.err_lines


def test_config_file_context(cai, docker_client, isolated_home):
    create_context("fromconfig", "unix:///var/run/docker.sock")
    cfg = isolated_home / ".config" / "containai"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text('[secure_engine]\ncontext_name = "fromconfig"\n')
    assert json.loads(cai("doctor", "--json").out)["engine"]["context"] == "fromconfig"


def test_flag_beats_env(cai, docker_client):
    create_context("flagged", "unix:///var/run/docker.sock")
    create_context("envctx", "unix:///var/run/docker.sock")
    result = cai("--context", "flagged", "doctor", "--json", env={"CONTAINAI_SECURE_ENGINE_CONTEXT": "envctx"})
    assert json.loads(result.out)["engine"]["context"] == "flagged"
    # the global flag also works after the subcommand
    result = cai("doctor", "--context", "flagged", "--json")
    assert json.loads(result.out)["engine"]["context"] == "flagged"
