"""Which agent, defined how: the known ones, the user config's [agent.NAME], and the default's precedence."""

from __future__ import annotations

import pytest

from cai import agents, config, userfiles
from cai.errors import CaiError


@pytest.fixture()
def user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("CONTAINAI_AGENT", raising=False)
    path = userfiles.user_config_path()
    path.parent.mkdir(parents=True)
    return path


def test_the_known_agents_start_with_their_prompts_off(user_config):
    found = agents.defined(config.Layers(None))
    assert found["claude"].argv == ["claude", "--dangerously-skip-permissions"]
    assert found["codex"].argv == ["codex", "--dangerously-bypass-approvals-and-sandbox"]
    assert found["gemini"].argv == ["gemini", "--yolo"]
    assert all("@" in agent.package.lstrip("@") for agent in agents.KNOWN.values())  # each pinned


def test_the_user_config_overrides_and_adds(user_config):
    user_config.write_text('[agent]\ndefault = "mine"\n[agent.claude]\nargs = []\n'
                           '[agent.mine]\npackage = "@me/mine@1.0.0"\ncommand = ["node", "/opt/mine.js"]\n')
    found = agents.defined(config.Layers(None))
    assert found["claude"].argv == ["claude"]
    assert found["claude"].package == agents.KNOWN["claude"].package
    assert (found["mine"].package, found["mine"].argv) == ("@me/mine@1.0.0", ["node", "/opt/mine.js"])


def test_a_repo_config_cannot_define_an_agent(user_config, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".containai").mkdir()
    (repo / ".containai" / "config.toml").write_text('[agent]\ndefault = "claude"\n[agent.claude]\ncommand = ["sh", "-c", "evil"]\n'
                                                   '[agent.evil]\npackage = "evil@1"\n')
    layers = config.Layers(repo)
    assert agents.lookup("claude", layers).argv == ["claude", "--dangerously-skip-permissions"]
    with pytest.raises(CaiError, match="^Unknown agent: evil$"):
        agents.lookup("evil", layers)


def test_the_default_agent_precedence(user_config, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    layers = config.Layers(repo)
    assert agents.default_name(None, layers) == "claude"
    user_config.write_text('[agent]\ndefault = "codex"\n')
    assert agents.default_name(None, config.Layers(repo)) == "codex"
    (repo / ".containai").mkdir()
    (repo / ".containai" / "config.toml").write_text('[agent]\ndefault = "gemini"\n')
    assert agents.default_name(None, config.Layers(repo)) == "gemini"
    monkeypatch.setenv("CONTAINAI_AGENT", "fake")
    assert agents.default_name(None, config.Layers(repo)) == "fake"
    assert agents.default_name("claude", config.Layers(repo)) == "claude"


@pytest.mark.parametrize("text, message", [
    ("bogus", "Unknown agent: bogus"),
    ("claude,,codex", "Invalid --agents value: claude,,codex"),
])
def test_bad_agent_lists(user_config, text, message):
    with pytest.raises(CaiError) as info:
        agents.parse_list(text, config.Layers(None))
    assert info.value.message == message


def test_an_agent_list_is_each_agent_once_in_order(user_config):
    assert [a.name for a in agents.parse_list("codex,claude,codex", config.Layers(None))] == ["codex", "claude"]


@pytest.mark.parametrize("body, message", [
    ('[agent."Bad Name"]\ncommand = ["x"]\n', "Invalid agent name in [agent.Bad Name]: Bad Name"),
    ('[agent.x]\ncommand = "x"\n', "Invalid [agent.x] command: a list of non-empty strings"),
    ('[agent.x]\npackage = "--global"\n', "Invalid [agent.x] package: '--global'"),
])
def test_bad_definitions_are_errors(user_config, body, message):
    user_config.write_text(body)
    with pytest.raises(CaiError) as info:
        agents.defined(config.Layers(None))
    assert info.value.message == message


def test_a_broken_definition_does_not_break_a_listing(user_config):
    user_config.write_text('[agent.Claude]\ncommand = ["x"]\n[agent.mine]\ncommand = ["mine"]\n')
    with pytest.raises(CaiError):
        agents.defined(config.Layers(None))
    names = agents.names_for_display(config.Layers(None))
    assert {"claude", "codex", "gemini", "mine"} <= set(names)
