from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cai import clock, engine, labels
from cai import pruning as gc
from cai.errors import CaiError

NOW = 1_705_314_600  # 2024-01-15T10:30:00Z
DAY = 86400


def utc_iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("text", [
    "2024-01-15T10:30:00.123456789Z",
    "2024-01-15T10:30:00Z",
    "2024-01-15T05:30:00-05:00",
    "2024-01-15T16:00:00+05:30",
    "2024-01-15T10:30:00.5Z",
    "2024-01-15T10:30:00.01139614Z",  # Docker trims trailing zeros: any number of digits
    "2024-01-15T10:30:00+00:00",
    "2024-01-15T10:30:00",  # no offset: the engine's UTC, not this host's zone
])
def test_rfc3339_vectors_all_give_the_same_second(text):
    assert clock.epoch_seconds(text) == 1705314600


@pytest.mark.parametrize("text", ["", "yesterday", "2024-01-15", "2024-13-15T10:30:00Z", "2024-01-15T25:00:00Z"])
def test_unreadable_timestamps_raise(text):
    with pytest.raises(ValueError):
        clock.epoch_seconds(text)


def test_zero_time_is_unknown_although_it_parses():
    assert clock.epoch_seconds("0001-01-01T00:00:00Z") == -62135596800
    assert clock.is_zero_time("0001-01-01T00:00:00Z")
    assert clock.is_zero_time("")
    assert not clock.is_zero_time("2024-01-15T10:30:00Z")


@pytest.mark.parametrize("text, seconds", [
    ("30d", 30 * DAY), ("7D", 7 * DAY), ("24h", 24 * 3600), ("0d", 0), ("0h", 0), ("2w", 14 * DAY),
    ("90m", 90 * 60), ("1d12h", DAY + 12 * 3600), ("1w2d3h4m", 9 * DAY + 3 * 3600 + 240),
])
def test_ages(text, seconds):
    assert clock.parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "-1d", "1d1d", "12h1d", "3M", "1y", " 1d", "1d ", "30s", "1dd"])
def test_bad_ages_get_the_original_error(text):
    with pytest.raises(CaiError) as raised:
        clock.parse_age(text)
    assert raised.value.code == 1
    assert raised.value.message == f"Invalid age format: {text} (expected Nd or Nh, e.g., 30d, 7d, 24h)"


def test_empty_age_needs_a_value():
    with pytest.raises(CaiError, match="^--age requires a value$"):
        clock.parse_age("")


@pytest.mark.parametrize("seconds, shown", [(0, "0h"), (1800, "0h"), (3600, "1h"), (DAY - 1, "23h"), (DAY, "1d 0h"),
                                            (45 * DAY + 5 * 3600 + 59, "45d 5h"), (-30, "0h")])
def test_age_display(seconds, shown):
    assert clock.format_age(seconds) == shown


def container(status="exited", *, finished="2024-01-01T10:30:00Z", created="2023-12-01T00:00:00Z", labels=None):
    return engine.Container(
        id="c" * 64, name="proj-main", context="default", status=status, image="containai:latest", image_id="sha256:1",
        labels={"containai.managed": "true", "containai.ssh-port": "2301", **(labels or {})},
        created=created, finished_at=finished,
    )


def test_exited_container_ages_from_when_it_stopped_not_when_it_was_made():
    # made 45 days ago, stopped 2 days ago: `docker container prune --filter until=` would take it
    made_long_ago = container(finished=utc_iso(NOW - 2 * DAY), created=utc_iso(NOW - 45 * DAY))
    assert gc.judge(made_long_ago, NOW, 30 * DAY) is None
    found = gc.judge(made_long_ago, NOW, DAY)
    assert isinstance(found, gc.Candidate)
    assert (found.age_seconds, found.reference_time) == (2 * DAY, utc_iso(NOW - 2 * DAY))


def test_never_started_container_ages_from_creation():
    never_ran = container("created", finished="0001-01-01T00:00:00Z", created=utc_iso(NOW - 31 * DAY))
    found = gc.judge(never_ran, NOW, 30 * DAY)
    assert isinstance(found, gc.Candidate) and found.age_seconds == 31 * DAY


def test_threshold_is_inclusive():
    exactly = container(finished=utc_iso(NOW - 30 * DAY))
    assert isinstance(gc.judge(exactly, NOW, 30 * DAY), gc.Candidate)
    assert gc.judge(container(finished=utc_iso(NOW - 30 * DAY + 1)), NOW, 30 * DAY) is None


def test_unknown_and_unreadable_times_are_skipped_with_a_reason():
    assert gc.judge(container(finished="0001-01-01T00:00:00Z"), NOW, 0).reason == "invalid timestamp"
    assert gc.judge(container("created", created=""), NOW, 0).reason == "invalid timestamp"
    assert gc.judge(container(finished="garbage"), NOW, 0).reason == "timestamp parse error"


def test_a_clock_behind_the_container_never_makes_it_stale():
    assert gc.judge(container(finished=utc_iso(NOW + 60)), NOW, 0) is None


@pytest.mark.parametrize("status", ["running", "paused", "restarting", "removing", "dead"])
def test_live_or_odd_states_are_never_candidates(status):
    assert gc.judge(container(status), NOW, 0) is None
    assert gc.protection({"State": status, "Labels": {}}) == status


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "yes", "Yes", " yes "])
def test_keep_label_protects_on_true_1_and_yes(value):
    assert gc.judge(container(labels={"containai.keep": value}), NOW, 0) is None
    assert gc.protection({"State": "exited", "Labels": {"containai.keep": value}}) == "containai.keep=true"


@pytest.mark.parametrize(("value", "reported"), [("false", False), ("no", False), ("0", False), ("maybe", True), ("y", True)])
def test_other_keep_values_protect_nothing_and_odd_ones_are_reported(value, reported):
    assert isinstance(gc.judge(container(labels={"containai.keep": value}), NOW, 0), gc.Candidate)
    assert (labels.unknown_keep_value({"containai.keep": value}) is not None) is reported


def test_unmanaged_containers_are_never_candidates():
    assert gc.judge(container(labels={"containai.managed": "false"}), NOW, 0) is None


def test_recently_created_containers_need_no_inspect():
    assert not gc.may_be_stale({"Created": NOW - 10}, NOW, 60)
    assert gc.may_be_stale({"Created": NOW - 60}, NOW, 60)
    assert gc.may_be_stale({}, NOW, 60)


LISTED_STATES = st.sampled_from(["running", "paused", "restarting", "exited", "created", "dead", "removing"])


@given(status=LISTED_STATES, keep=st.sampled_from([None, "true", "false", "TRUE"]),
       managed=st.sampled_from(["true", "false", "", "True"]), age=st.integers(-DAY, 400 * DAY),
       threshold=st.integers(0, 400 * DAY))
def test_property_a_protected_container_is_never_a_candidate(status, keep, managed, age, threshold):
    labels = {"containai.managed": managed}
    if keep is not None:
        labels["containai.keep"] = keep
    record = container(status, finished=utc_iso(NOW - age), created=utc_iso(NOW - age), labels=labels)
    verdict = gc.judge(record, NOW, threshold)
    if isinstance(verdict, gc.Candidate):
        assert status in ("exited", "created")
        assert keep != "true" and managed == "true"
        assert age >= threshold


def test_stale_images_are_our_unused_tags():
    images = [
        {"Id": "sha256:a", "RepoTags": ["containai:latest"]},
        {"Id": "sha256:b", "RepoTags": ["containai:old", "ghcr.io/containai/agent:1", "other:1"]},
        {"Id": "sha256:c", "RepoTags": ["ghcr.io/novotnyllc/containai:1", "containai-template-x:local", "my-containai:1"]},
        {"Id": "sha256:d", "RepoTags": ["<none>:<none>"]},
        {"Id": "sha256:e", "RepoTags": None},
        {"Id": "sha256:f", "RepoTags": ["containai:by-tag"]},
    ]
    containers = [{"ImageID": "sha256:a", "Image": "containai:latest"}, {"ImageID": "sha256:zz", "Image": "containai:by-tag"}]
    assert gc.stale_images(images, containers) == [
        gc.StaleImage("containai:old", "sha256:b"), gc.StaleImage("ghcr.io/containai/agent:1", "sha256:b"),
    ]


def test_rendering_matches_the_original():
    plan = gc.Plan("ctx", "30d", 30 * DAY, "2024-01-15T10:30:00Z", NOW)
    assert gc.render_plan(plan) == ["No stale resources found."]
    plan.candidates = [gc.Candidate("a", "1", "exited", "t", 45 * DAY + 5 * 3600), gc.Candidate("b", "2", "created", "t", 1800)]
    plan.images = [gc.StaleImage("containai:old", "sha256:b")]
    assert gc.render_plan(plan) == [
        "Stale ContainAI resources (context: ctx, age >= 30d):", "",
        "Containers:", "  a (exited, age: 45d 5h)", "  b (created, age: 0h)", "",
        "Unused images:", "  containai:old", "",
    ]
    outcome = gc.Outcome(["a"], [], [{"kind": "container", "name": "b", "message": "now running"}])
    assert gc.render_outcome(outcome) == ["", "Removed: 1 container(s), 0 image(s)", "Failed: 1 container(s), 0 image(s)"]
    assert gc.render_outcome(gc.Outcome()) == [""]
