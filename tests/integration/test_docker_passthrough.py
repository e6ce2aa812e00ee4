"""`cai docker …` runs docker pinned to the context and returns docker's exit code."""

from __future__ import annotations

from conftest import RUN_ID, RUN_LABEL


def test_exit_code_passes_through(cai, agent_image):
    result = cai("docker", "run", "--rm", "--label", f"{RUN_LABEL}={RUN_ID}", agent_image, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.code == 7
    assert result.out == "out\n"
    assert "err" in result.err_lines


def test_ambient_docker_host_does_not_win(cai, docker_client):
    result = cai("docker", "version", "--format", "{{.Server.Version}}", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.code == 0, result.err
    assert result.out.strip() == docker_client.version()["Version"]


def test_exec_into_cai_container_runs_as_agent(cai, make_container):
    ours = make_container(labels={"containai.managed": "true"})
    foreign = make_container(labels={"containai.managed": "false"})
    assert cai("docker", "exec", ours.name, "id", "-un").out == "agent\n"
    assert cai("docker", "exec", "-u", "root", ours.name, "id", "-un").out == "root\n"
    assert cai("docker", "exec", foreign.name, "id", "-un").out == "root\n"


def test_explicit_context_in_args_is_left_alone(cai, docker_client):
    result = cai("docker", "--context", "default", "info", "--format", "{{.ServerVersion}}")
    assert result.code == 0 and result.out.strip() == docker_client.version()["Version"]


def test_docker_own_errors_keep_docker_code(cai, docker_client):
    result = cai("docker", "inspect", "--type", "container", "--", "cai-test-no-such-container")
    assert result.code == 1
    assert "No such container" in result.err
