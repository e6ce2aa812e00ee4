"""`cai run` without a command starts the agent in a detached session named after it: printed
without a terminal, attached on one (Ctrl-b d detaches), attached to again rather than started
twice; an agent missing from the image is 127 with the hint to build it; an unknown one is an
error before anything is made. The agent is a stand-in the user config defines (`[agent.fake]`),
which is also the override path a new agent takes."""

from __future__ import annotations

import json

import pytest

from conftest import CAI, Tmux, agent_workspace, run_cai, wait_for

FAKE = 'import sys, time; print("fake agent up", sys.argv[1:], flush=True); time.sleep(900)'


@pytest.fixture(scope="module")
def agent_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("agent-home")
    config = home / ".config" / "containai" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[agent.fake]\ncommand = ["python3", "-c", {json.dumps(FAKE)}]\nargs = ["--yolo"]\n')
    return home


@pytest.fixture(scope="module")
def box(tmp_path_factory, agent_home, docker_client, agent_image):
    workspace = agent_workspace(tmp_path_factory, "agent-ws")
    done = run_cai(agent_home, "run", "--no-agent", str(workspace))
    assert done.returncode == 0, done.stderr
    yield workspace, done.stdout.strip()
    docker_client.api.remove_container(done.stdout.strip(), force=True)


def sessions(home, workspace):
    done = run_cai(home, "session", "ls", "-a", "--json", "-w", str(workspace))
    assert done.returncode == 0, done.stderr
    return {s["name"]: s for s in json.loads(done.stdout)["sessions"]}


def test_without_a_terminal_it_starts_the_agent_once_and_prints_the_session(agent_home, box):
    workspace, _ = box
    done = run_cai(agent_home, "run", "--agent", "fake", str(workspace))
    assert (done.returncode, done.stdout) == (0, "fake\n"), done.stderr
    first = sessions(agent_home, workspace)["fake"]
    assert first["state"] == "running"
    assert first["command"][-1] == "--yolo"  # the configured args come after the command
    log = run_cai(agent_home, "session", "logs", "fake", "-w", str(workspace))
    assert "fake agent up ['--yolo']" in log.stdout
    again = run_cai(agent_home, "run", "--agent", "fake", str(workspace))
    assert (again.returncode, again.stdout) == (0, "fake\n"), again.stderr
    assert sessions(agent_home, workspace)["fake"]["started"] == first["started"]  # the same session
    assert run_cai(agent_home, "session", "kill", "fake", "-w", str(workspace)).returncode == 0


def test_the_environment_names_the_default_agent(agent_home, box):
    workspace, _ = box
    done = run_cai(agent_home, "run", str(workspace), env={"CONTAINAI_AGENT": "fake"})
    assert (done.returncode, done.stdout) == (0, "fake\n"), done.stderr
    assert run_cai(agent_home, "session", "kill", "fake", "-w", str(workspace)).returncode == 0


def test_an_agent_missing_from_the_image_is_127_with_the_hint(agent_home, box):
    workspace, _ = box
    done = run_cai(agent_home, "run", str(workspace))  # claude, which the suite's image lacks
    assert done.returncode == 127
    assert done.stderr.splitlines()[0].startswith("[ERROR] Agent claude is not in the image of ")
    assert "[HINT] cai image build --agents claude" in done.stderr.splitlines()
    assert "claude" not in sessions(agent_home, workspace)  # no record left to block the next try


def test_an_unknown_agent_is_an_error_before_anything_is_made(agent_home, tmp_path_factory, docker_client):
    workspace = agent_workspace(tmp_path_factory, "no-agent-ws")
    done = run_cai(agent_home, "run", "--agent", "bogus", str(workspace))
    assert done.returncode == 1
    assert done.stderr.splitlines()[:2] == ["[ERROR] Unknown agent: bogus", "[ERROR] Known agents: claude, codex, fake, gemini"]
    assert docker_client.containers.list(all=True, filters={"label": f"containai.workspace={workspace}"}) == []


def test_the_dry_run_names_the_agents_command(agent_home, box):
    workspace, _ = box
    done = run_cai(agent_home, "run", "--dry-run", "--agent", "fake", str(workspace))
    assert done.returncode == 0, done.stderr
    assert f"COMMAND=python3 -c {FAKE!r} --yolo" in done.stdout.splitlines()


def test_on_a_terminal_it_attaches_and_a_second_run_attaches_again(agent_home, box):
    workspace, _ = box
    screen = Tmux(agent_home, 120, 30)
    try:
        screen.type(f"{CAI} run --agent fake {workspace}; echo run-rc=$?")
        screen.wait_for_text(r"fake agent up \['--yolo'\]")
        started = sessions(agent_home, workspace)["fake"]["started"]
        screen.key("C-b")
        screen.key("d")
        screen.wait_for_text(r"^run-rc=0$")
        screen.type("clear")
        screen.type(f"{CAI} run --agent fake {workspace}; echo again-rc=$?")
        wait_for(lambda: sessions(agent_home, workspace)["fake"]["attached_clients"] == 1, timeout=30, interval=0.3)
        assert sessions(agent_home, workspace)["fake"]["started"] == started
        screen.key("C-b")
        screen.key("d")
        screen.wait_for_text(r"^again-rc=0$")
    finally:
        screen.close()
    assert run_cai(agent_home, "session", "kill", "fake", "-w", str(workspace)).returncode == 0


def test_status_and_ps_show_the_agent_session(agent_home, box):
    workspace, name = box
    assert run_cai(agent_home, "run", "--agent", "fake", str(workspace)).returncode == 0
    status = run_cai(agent_home, "status", "--json", "-w", str(workspace))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["agent"] == {"name": "fake", "session": "fake", "state": "running"}
    text = run_cai(agent_home, "status", "-w", str(workspace)).stdout.splitlines()
    assert "  Agent: fake (running, session fake)" in text
    rows = json.loads(run_cai(agent_home, "ps", "--format", "json").stdout)["containers"]
    assert next(row for row in rows if row["name"] == name)["agent"] == {"name": "fake", "session": "fake", "state": "running"}
    table = run_cai(agent_home, "ps").stdout.splitlines()
    assert table[0].split()[-1] == "AGENT"
    assert next(line for line in table if line.startswith(name + " ")).split()[-1] == "fake"
    assert run_cai(agent_home, "session", "kill", "fake", "-w", str(workspace)).returncode == 0
    wait_for(lambda: json.loads(run_cai(agent_home, "status", "--json", "-w", str(workspace)).stdout).get("agent")
             == {"name": "fake", "session": "fake", "state": "not running"}, timeout=30, interval=0.5)
