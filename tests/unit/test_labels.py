from __future__ import annotations

import pytest

from cai import labels
from cai.errors import CaiError


@pytest.mark.parametrize(
    ("repo", "branch", "expected"),
    [
        ("MyRepo", "feature/One", "myrepo-one"),
        ("MyRepo", "HEAD", "myrepo-detached"),
        ("MyRepo", "", "myrepo-detached"),
        ("NoGit", None, "nogit-nogit"),
        ("___", "___", "repo-branch"),
        ("my-app", "feat/ui/button", "my-app-button"),
        ("project", "develop", "project-develop"),
        ("My_Repo.Name", None, "myreponame-nogit"),
        ("r" * 40, None, "r" * 18 + "-nogit"),
        ("r" * 40, "b" * 40, "r" * 11 + "-" + "b" * 12),
    ],
)
def test_container_name_vectors(repo, branch, expected):
    name = labels.container_name(repo, branch)
    assert name == expected
    assert len(name) <= 24


def test_container_name_from_real_git_repos(tmp_path):
    import subprocess

    fresh = tmp_path / "Fresh"
    fresh.mkdir()
    subprocess.run(["git", "init", "-q", str(fresh)], check=True)
    assert labels.container_name_for(fresh) == "fresh-detached"
    plain = tmp_path / "NoGit"
    plain.mkdir()
    assert labels.container_name_for(plain) == "nogit-nogit"


def test_legacy_name_vector():
    assert labels.legacy_container_name("/home/user/project") == "containai-9dad1e4e08b0"


def test_hostname():
    assert labels.sanitize_hostname("My_Container--X") == "my-container-x"
    assert labels.sanitize_hostname("___") == "container"


def test_collision_suffixes():
    assert labels.with_suffix("abc", 2) == "abc-2"
    assert labels.with_suffix("a" * 20 + "-bbb", 12) == "a" * 20 + "-12"
    taken = {"proj-main": "/other", "proj-main-2": "/other2"}
    assert labels.resolve_new_name("proj-main", "/mine", taken.get) == "proj-main-3"
    assert labels.resolve_new_name("proj-main", "/other", taken.get) == "proj-main"


def test_too_many_collisions():
    with pytest.raises(CaiError, match="Too many container name collisions"):
        labels.resolve_new_name("x", "/mine", lambda name: "/someone-else")


@pytest.mark.parametrize(
    ("found", "ours"),
    [
        ({labels.MANAGED: "true"}, True),
        ({labels.MANAGED: "false"}, False),
        ({}, False),  # `docker create containai:latest`: the original's lenient rule took it for cai's
        ({labels.MANAGED: "<no value>"}, False),
        ({labels.MANAGED: "TRUE"}, False),
        ({labels.MANAGED: "true", labels.HELPER: "true"}, False),
    ],
)
def test_one_ownership_rule(found, ours):
    assert labels.is_workspace_container(found) is ours
    assert labels.is_managed(found) is (found.get(labels.MANAGED) == "true")


@pytest.mark.parametrize("bad", ["", "-rf", "a;b", "a b", "$(x)", "naïve", "x" * 300, "a/b", "\x00a"])
def test_container_name_rejected(bad):
    with pytest.raises(CaiError) as info:
        labels.validate_container_name(bad)
    assert info.value.code == 1


def test_workspace_normalization(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert labels.resolve_workspace(str(link)) == real.resolve()
    with pytest.raises(CaiError, match="Workspace path does not exist: /no/such"):
        labels.resolve_workspace("/no/such")
