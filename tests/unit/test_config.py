from __future__ import annotations

import multiprocessing
import tomllib

import pytest

from cai import config, contexts, userfiles
from cai.errors import CaiError


def test_toml_round_trip():
    doc = {
        "data_volume": "vol",
        "secure_engine": {"context_name": "ctx"},
        "workspace": {
            "/home/u/p q": {"container_name": "p-main", "data_volume": "v", "n": 3, "ok": True},
            '/odd/"quoted"\\path\n': {"excludes": ["a", "b/c"]},
        },
        "list": [1, 2.5, "x"],
        "tables": [{"a": 1}, {"a": 2}],
    }
    assert tomllib.loads(config.dump_toml(doc)) == doc


def test_xdg_config_home_is_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert userfiles.user_config_path() == tmp_path / "xdg" / "containai" / "config.toml"


def test_workspace_state_write_and_read(tmp_path):
    config.save_workspace_state("/w/one", container_name="one-main", data_volume="v1")
    config.save_workspace_state("/w/one", agent="claude")
    assert config.workspace_state("/w/one") == {"container_name": "one-main", "data_volume": "v1", "agent": "claude"}
    assert config.workspace_state("/w/other") == {}
    assert oct(userfiles.user_config_path().stat().st_mode & 0o777) == "0o600"


def _writer(args):
    home, index = args
    import os

    os.environ["HOME"] = home
    os.environ.pop("XDG_CONFIG_HOME", None)
    from cai import config as cfg

    cfg.save_workspace_state(f"/ws/{index}", container_name=f"c{index}")


def test_concurrent_writers_lose_no_entry(isolated_home):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(8) as pool:
        pool.map(_writer, [(str(isolated_home), i) for i in range(40)])
    doc = tomllib.loads(userfiles.user_config_path().read_text())
    assert sorted(doc["workspace"]) == sorted(f"/ws/{i}" for i in range(40))


def test_volume_precedence(tmp_path, monkeypatch):
    ws = tmp_path / "repo" / "sub"
    ws.mkdir(parents=True)
    (tmp_path / "repo" / ".git").mkdir()
    assert config.Layers(ws).volume(None) == "containai-data"

    userfiles.user_config_path().parent.mkdir(parents=True)
    userfiles.user_config_path().write_text('data_volume = "user-global"\n')
    assert config.Layers(ws).volume(None) == "user-global"

    (tmp_path / "repo" / ".containai").mkdir()
    (tmp_path / "repo" / ".containai" / "config.toml").write_text(
        f'data_volume = "repo-top"\n[workspace."{ws}"]\ndata_volume = "repo-ws"\n'
    )
    assert config.Layers(ws).volume(None) == "repo-ws"

    config.save_workspace_state(str(ws), data_volume="from-state")
    assert config.Layers(ws).volume(None) == "from-state"

    monkeypatch.setenv("CONTAINAI_DATA_VOLUME", "from-env")
    assert config.Layers(ws).volume(None) == "from-env"
    assert config.Layers(ws).volume("from-flag") == "from-flag"


def test_discovery_stops_at_git_root(tmp_path):
    outer = tmp_path / "outer"
    (outer / ".containai").mkdir(parents=True)
    (outer / ".containai" / "config.toml").write_text('data_volume = "outer"\n')
    repo = outer / "repo"
    (repo / ".git").mkdir(parents=True)
    assert config.discover_config(repo) is None
    assert config.discover_config(outer / "plain") == outer / ".containai" / "config.toml"


@pytest.mark.parametrize("bad", ["", "-x", "a b", "a/b", "ä", "v" * 256, ".hidden"])
def test_invalid_volume_names(bad):
    with pytest.raises(CaiError, match="Invalid volume name"):
        config.Layers(config.Path("/")).volume(bad)


def test_invalid_env_context_is_an_error(monkeypatch):
    monkeypatch.setenv("CONTAINAI_SECURE_ENGINE_CONTEXT", "bad\nname")
    with pytest.raises(CaiError, match=r"^Invalid context name: bad\\nname \(from CONTAINAI_SECURE_ENGINE_CONTEXT\)$"):
        contexts.configured(config.Layers(None))


def test_the_users_context_shows_through_a_repo_config_without_one(tmp_path, monkeypatch):
    user = userfiles.user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text('[secure_engine]\ncontext_name = "mine"\n')
    repo = tmp_path / "repo"
    (repo / ".containai").mkdir(parents=True)
    (repo / ".containai" / "config.toml").write_text('data_volume = "v"\n')
    assert config.Layers(repo).engine_context() == ("mine", f"[secure_engine].context_name in {user}")


def test_explicit_config_parse_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("not = [valid")
    with pytest.raises(CaiError, match="Failed to parse config"):
        config.Layers(tmp_path, explicit_config=bad).volume(None)
