"""Lookup by name across candidate contexts, against real containers."""

from __future__ import annotations

import pytest

from cai import config, contexts, engine
from cai.errors import CaiError
from conftest import create_context, unique


def test_single_hit_names_its_context(make_container):
    container = make_container(start=False)
    found = contexts.find_by_name(container.name, None, config.Layers(None))
    assert (found.name, found.context, found.status) == (container.name, "default", "created")


def test_no_hit_is_not_found():
    name = unique()
    with pytest.raises(CaiError) as info:
        contexts.find_by_name(name, None, config.Layers(None))
    assert info.value.code == 10
    assert info.value.message == f"Container not found: {name}"


def test_two_hits_is_the_ambiguity_error_alone(make_container):
    container = make_container(start=False)
    create_context("containai-docker", "unix:///var/run/docker.sock")
    with pytest.raises(CaiError) as info:
        contexts.find_by_name(container.name, None, config.Layers(None))
    err = info.value
    assert err.code == 1
    assert err.message == f"Container '{container.name}' exists in multiple contexts:"
    assert list(err.extra) == ["  - containai-docker", "  - default", "Remove or rename the duplicate to resolve ambiguity."]
    assert "not found" not in " ".join([err.message, *err.extra])


def test_unreachable_candidate_is_a_miss(make_container, tmp_path):
    container = make_container(start=False)
    create_context("containai-docker", f"unix://{tmp_path}/nothing.sock")
    assert contexts.find_by_name(container.name, None, config.Layers(None)).context == "default"


def test_no_candidate_answers_gives_the_classified_error(tmp_path):
    create_context("gone", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(engine.EngineUnavailable) as info:
        contexts.find_by_name("whatever", "gone", config.Layers(None))
    assert info.value.kind == "not_running"
