"""`cai gc` against real engines. Everything that may remove runs on spare dockerd instances of
the tests' own (spare_engine.py), so a stale container of the developer's is never at risk; the
shared engine is only read, to prove gc stays in its context."""

from __future__ import annotations

import json
import os
import random
import time
from datetime import datetime

import pytest

from conftest import CAI, Tmux, run_cai, unique

AGE_WAIT_S = 62  # containers the pool made first are older than `--age 1m` after this


@pytest.fixture(scope="module")
def gc_home(tmp_path_factory):
    return tmp_path_factory.mktemp("gc-home")


@pytest.fixture(scope="module")
def spare(spare_engine, gc_home):
    engine = spare_engine(1)
    engine.add_context(gc_home)
    return engine


@pytest.fixture()
def fresh(spare):
    spare.reset()
    return spare


def gc(home, context, *args, env=None):
    return run_cai(home, "gc", "--context", context, *args, env=env)


def standard_set(engine):
    """One container of every kind gc must tell apart; the first two are the only candidates."""
    made = {}
    for name, state, extra in [
        ("gc-exited", "exited", {}),
        ("gc-created", "created", {}),
        ("gc-running", "running", {}),
        ("gc-paused", "paused", {}),
        ("gc-restarting", "restarting", {}),
        ("gc-kept", "exited", {"labels": {"containai.keep": "true"}}),
        ("gc-kept-created", "created", {"labels": {"containai.keep": "true"}}),
        ("gc-keep-false", "running", {"labels": {"containai.keep": "false"}}),
        ("gc-foreign", "exited", {"managed": None}),
        ("gc-managed-false", "exited", {"managed": "false"}),
        ("gc-managed-True", "created", {"managed": "True"}),
    ]:
        made[name] = engine.make(state, name=name, **extra)
    return made


CANDIDATES = {"gc-exited", "gc-created"}


def test_dry_run_lists_only_stopped_managed_unkept_containers(fresh, gc_home):
    standard_set(fresh)
    before = fresh.names()
    done = gc(gc_home, fresh.context, "--dry-run", "--age", "0m", "--verbose")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [f"Stale ContainAI resources (context: {fresh.context}, age >= 0m):", "", "Containers:"]
    assert sorted(lines[3:5]) == ["  gc-created (created, age: 0h)", "  gc-exited (exited, age: 0h)"]
    assert lines[5:] == ["", "[DRY-RUN] Would remove 2 container(s) and 0 image(s)"]
    assert "[INFO] Skipping protected container: gc-kept (containai.keep=true)" in done.stderr.splitlines()
    assert "[INFO] Skipping protected container: gc-kept-created (containai.keep=true)" in done.stderr.splitlines()
    assert fresh.names() == before

    younger = gc(gc_home, fresh.context, "--dry-run", "--age", "1h")
    assert (younger.returncode, younger.stdout, younger.stderr) == (0, "No stale resources found.\n", "")
    assert fresh.names() == before


def test_force_removes_exactly_the_candidates_and_their_ssh_files(fresh, gc_home):
    made = standard_set(fresh)
    made["gc-port"] = fresh.make("exited", name="gc-port", labels={"containai.ssh-port": "2399"})
    ssh_dir = gc_home / ".ssh" / "containai.d"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    for name in ("gc-port", "gc-kept"):
        (ssh_dir / f"{name}.conf").write_text(f"Host {name}\n    Port 2399\n")
    # The same name on another engine: its config is that engine's, and stays.
    (ssh_dir / "gc-exited.conf").write_text("Host gc-exited\n    Port 2399\n    HostKeyAlias cai-elsewhere-0123456789ab\n")
    known_hosts = gc_home / ".config" / "containai" / "known_hosts"
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    gone = f"cai-{fresh.context}-{made['gc-port'].id[:12]}"
    known_hosts.write_text(f"{gone} ssh-ed25519 AAAAgone\ncai-elsewhere-0123456789ab ssh-ed25519 AAAAstays\n")

    done = gc(gc_home, fresh.context, "--force", "--age", "0m", "--verbose")
    assert done.returncode == 0, done.stderr
    removed = CANDIDATES | {"gc-port"}
    assert done.stdout.splitlines()[-2:] == ["", "Removed: 3 container(s), 0 image(s)"]
    for name in removed:
        assert f"[INFO] Removed container: {name}" in done.stderr.splitlines()
    assert fresh.names() == set(made) - removed
    assert sorted(p.name for p in ssh_dir.iterdir()) == ["gc-exited.conf", "gc-kept.conf"]
    assert known_hosts.read_text() == "cai-elsewhere-0123456789ab ssh-ed25519 AAAAstays\n"
    for name in ("gc-running", "gc-paused", "gc-keep-false"):
        assert made[name].client.containers.get(name).status in ("running", "paused")


def test_without_a_terminal_or_force_it_lists_then_cancels(fresh, gc_home):
    standard_set(fresh)
    before = fresh.names()
    done = gc(gc_home, fresh.context, "--age", "0m")
    assert done.returncode == 0
    assert done.stderr == ""
    assert done.stdout.splitlines()[-2:] == ["", "Cancelled."]
    assert fresh.names() == before


def test_json_for_cron(fresh, gc_home):
    made = standard_set(fresh)
    planned = gc(gc_home, fresh.context, "--json", "--dry-run", "--age", "0m")
    assert planned.returncode == 0, planned.stderr
    doc = json.loads(planned.stdout)
    assert doc["schema_version"] == 1
    assert doc["context"] == fresh.context
    assert doc["threshold"] == {"age": "0m", "seconds": 0}
    daemon_now = datetime.fromisoformat(fresh.client.info()["SystemTime"][:26] + "+00:00")
    reported = datetime.fromisoformat(doc["daemon_time"][:26] + "+00:00")
    assert abs((daemon_now - reported).total_seconds()) < 30
    assert (doc["dry_run"], doc["cancelled"], doc["images"], doc["errors"], doc["skipped"]) == (True, False, [], [], [])
    assert doc["removed"] == {"containers": [], "images": [], "helpers": []}
    assert doc["helpers"] == [] and doc["unrecognized_keep"] == []
    by_name = {c["name"]: c for c in doc["candidates"]}
    assert set(by_name) == CANDIDATES
    for name, candidate in by_name.items():
        attrs = fresh.client.api.inspect_container(name)
        expected = attrs["State"]["FinishedAt"] if name == "gc-exited" else attrs["Created"]
        assert candidate["reference_time"] == expected
        assert candidate["id"] == made[name].id
        assert candidate["status"] == {"gc-exited": "exited", "gc-created": "created"}[name]
        assert 0 <= candidate["age_seconds"] < 120
    reasons = {p["name"]: p["reason"] for p in doc["protected"]}
    assert reasons["gc-running"] == "running" and reasons["gc-paused"] == "paused"
    assert reasons["gc-kept"] == reasons["gc-kept-created"] == "containai.keep=true"
    assert reasons["gc-keep-false"] == "running"
    assert reasons["gc-restarting"] in ("restarting", "running")
    assert not {"gc-foreign", "gc-managed-false", "gc-managed-True"} & set(reasons)

    unconfirmed = gc(gc_home, fresh.context, "--json", "--age", "0m")
    assert unconfirmed.returncode == 0
    assert json.loads(unconfirmed.stdout)["cancelled"] is True
    assert CANDIDATES <= fresh.names()

    forced = gc(gc_home, fresh.context, "--json", "--force", "--age", "0m")
    assert forced.returncode == 0, forced.stderr
    doc = json.loads(forced.stdout)
    assert sorted(doc["removed"]["containers"]) == sorted(CANDIDATES)
    assert doc["errors"] == [] and doc["cancelled"] is False
    assert not CANDIDATES & fresh.names()


def test_dry_run_on_a_terminal_neither_asks_nor_loads_the_prompt_library(fresh, gc_home):
    standard_set(fresh)
    probe = (f"import sys; from cai.main import cli; rc = cli(['gc', '--dry-run', '--age', '0m', '--context', "
             f"'{fresh.context}']); print('rc', rc, 'loaded', 'questionary' in sys.modules, 'prompt_toolkit' in sys.modules)")
    session = Tmux(gc_home, width=160)
    try:
        session.type(f"{CAI.split()[0]} -c \"{probe}\"")
        session.wait_for_text(r"^rc 0 loaded False False$", timeout=60)
        assert "[DRY-RUN] Would remove 2 container(s) and 0 image(s)" in session.screen()
    finally:
        session.close()
    assert CANDIDATES <= fresh.names()


def test_a_terminal_is_asked_and_no_keeps_everything(fresh, gc_home):
    standard_set(fresh)
    before = fresh.names()
    session = Tmux(gc_home, width=160)
    try:
        session.type(f"{CAI} gc --context {fresh.context} --age 0m; echo rc=$?")
        session.wait_for_text(r"Remove 2 resource\(s\)\? \[y/N\]", timeout=60)
        session.type("n")
        session.wait_for_text(r"^rc=0$", timeout=30)
        assert "Cancelled." in session.screen()
        assert fresh.names() == before

        session.type("clear")
        session.type(f"{CAI} gc --context {fresh.context} --age 0m; echo rc=$?")
        session.wait_for_text(r"Remove 2 resource\(s\)\? \[y/N\]", timeout=60)
        session.type("y")
        session.wait_for_text(r"^rc=0$", timeout=60)
        assert "Removed: 2 container(s), 0 image(s)" in session.screen()
    finally:
        session.close()
    assert fresh.names() == before - CANDIDATES


def test_a_container_that_starts_while_the_question_waits_is_kept_and_reported(fresh, gc_home):
    made = standard_set(fresh)
    made["gc-unchanged"] = fresh.make("exited", name="gc-unchanged")
    session = Tmux(gc_home, width=160)
    try:
        session.type(f"{CAI} gc --context {fresh.context} --age 0m; echo rc=$?")
        session.wait_for_text(r"Remove 3 resource\(s\)\? \[y/N\]", timeout=60)
        made["gc-exited"].start()  # running by the time gc removes
        made["gc-created"].start()  # ...and stopped again: it was used since the listing
        made["gc-created"].kill()
        fresh.wait_state(made["gc-created"], "exited")
        session.type("y")
        session.wait_for_text(r"^rc=1$", timeout=60)
        screen = session.screen()
    finally:
        session.close()
    assert "[WARN] Skipping container (now running): gc-exited" in screen
    assert "[WARN] Skipping container (changed since listing): gc-created" in screen
    assert "Removed: 1 container(s), 0 image(s)" in screen
    assert "Failed: 2 container(s), 0 image(s)" in screen
    assert {"gc-exited", "gc-created"} <= fresh.names()
    assert "gc-unchanged" not in fresh.names()


def test_images_only_ours_and_only_unused(fresh, gc_home):
    for reference in ("containai:gc-unused", "ghcr.io/containai/gc:unused", "containai:gc-used-by-kept",
                      "containai:gc-used-by-foreign", "other:gc-unused", "ghcr.io/novotnyllc/containai:gc",
                      "containai-template-x:local"):
        fresh.make_image(reference)
    fresh.make("exited", name="gc-kept-user", labels={"containai.keep": "true"}, image="containai:gc-used-by-kept")
    fresh.make("running", name="gc-foreign-user", managed=None, image="containai:gc-used-by-foreign")

    planned = gc(gc_home, fresh.context, "--dry-run", "--images", "--age", "0m")
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert "Containers:" not in lines
    start = lines.index("Unused images:")
    assert sorted(lines[start + 1:start + 3]) == ["  containai:gc-unused", "  ghcr.io/containai/gc:unused"]
    assert lines[-1] == "[DRY-RUN] Would remove 0 container(s) and 2 image(s)"

    done = gc(gc_home, fresh.context, "--force", "--images", "--age", "0m", "--verbose")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "Removed: 0 container(s), 2 image(s)"
    assert "[INFO] Removed image: containai:gc-unused" in done.stderr.splitlines()
    tags = {tag for i in fresh.client.images.list() for tag in i.tags}
    assert tags == {"cai-tiny:sleep", "containai:gc-used-by-kept", "containai:gc-used-by-foreign", "other:gc-unused",
                    "ghcr.io/novotnyllc/containai:gc", "containai-template-x:local"}


def test_gc_uses_the_resolved_context_not_the_ambient_one(fresh, gc_home, make_container, docker_client):
    fresh.make("exited", name="gc-spare-stale")
    on_shared = make_container(name=unique("gc-shared"), labels={"containai.managed": "true"}, start=False)
    by_config = {"CONTAINAI_SECURE_ENGINE_CONTEXT": fresh.context, "DOCKER_CONTEXT": "default"}

    planned = run_cai(gc_home, "gc", "--dry-run", "--age", "0m", env=by_config)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[0] == f"Stale ContainAI resources (context: {fresh.context}, age >= 0m):"
    assert "  gc-spare-stale (exited, age: 0h)" in planned.stdout.splitlines()
    assert on_shared.name not in planned.stdout

    done = run_cai(gc_home, "gc", "--force", "--age", "0m", env=by_config)
    assert done.returncode == 0, done.stderr
    assert "gc-spare-stale" not in fresh.names()
    on_shared.reload()
    assert on_shared.status == "created"

    # the shared engine is only read: its stale container is listed there, and stays
    listed = gc(gc_home, "default", "--dry-run", "--age", "0m")
    assert f"  {on_shared.name} (created, age: 0h)" in listed.stdout.splitlines()


def test_an_unknown_context_is_an_error(gc_home):
    missing = run_cai(gc_home, "gc", "--dry-run", "--context", "no-such-context")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.startswith("[ERROR] ")


def test_age_is_checked_before_the_engine(gc_home):
    done = run_cai(gc_home, "gc", "--age", "3x", "--context", "no-such-context")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "[ERROR] Invalid age format: 3x (expected Nd or Nh, e.g., 30d, 7d, 24h)"
    missing = run_cai(gc_home, "gc", "--age")
    assert (missing.returncode, missing.stderr.splitlines()) == (
        1, ["[ERROR] --age requires a value (e.g., 30d, 7d, 24h)", "Use 'cai gc --help' for usage"])


# --- ages and the property test, on a second spare engine -------------------------------------

KINDS = [
    ("exited", {}), ("created", {}), ("running", {}), ("paused", {}), ("restarting", {}),
    ("exited", {"labels": {"containai.keep": "true"}}), ("created", {"labels": {"containai.keep": "true"}}),
    ("exited", {"managed": None}), ("created", {"managed": None}), ("exited", {"managed": "false"}),
]


def prunable(state, extra):
    return state in ("exited", "created") and extra.get("managed", "true") == "true" \
        and (extra.get("labels") or {}).get("containai.keep") != "true"


@pytest.fixture(scope="module", autouse=True)
def aged_pool(spare_engine, gc_home):
    """Made when this module starts, so that its containers are over a minute old by the time the
    last test runs. One is created now but keeps running: it stops just before gc, so its Created
    is old and its FinishedAt new."""
    engine = spare_engine(2)
    engine.add_context(gc_home)
    seed = int(os.environ.get("CAI_GC_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    pool = {}
    fixed = [("exited", {}), ("created", {}), ("running", {})]
    for i, (state, extra) in enumerate(fixed + [rng.choice(KINDS) for _ in range(12)]):
        name = f"old-{i}-{state}"
        engine.make(state, name=name, **extra)
        pool[name] = (state, extra)
    return {"engine": engine, "seed": seed, "rng": rng, "pool": pool, "ready_at": time.monotonic() + AGE_WAIT_S,
            "late_stopper": "old-2-running"}


def test_property_no_protected_container_is_ever_removed_across_ages(aged_pool, gc_home):
    engine, seed, rng, pool = aged_pool["engine"], aged_pool["seed"], aged_pool["rng"], aged_pool["pool"]
    context = engine.context
    wait = aged_pool["ready_at"] - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    late = engine.client.containers.get(aged_pool["late_stopper"])
    late.kill()  # made over a minute ago, stopped now: by FinishedAt it is young
    engine.wait_state(late, "exited")
    pool[late.name] = ("exited-late", {})
    young = {}
    for i in range(8):
        state, extra = rng.choice(KINDS)
        name = f"young-{i}-{state}"
        engine.make(state, name=name, **extra)
        young[name] = (state, extra)
    context_msg = f"seed {seed} (rerun with CAI_GC_SEED={seed})"

    def run(age):
        before = engine.names()
        done = gc(gc_home, context, "--force", "--json", "--age", age)
        assert done.returncode == 0, (context_msg, done.stderr)
        doc = json.loads(done.stdout)
        removed = set(doc["removed"]["containers"])
        assert removed == before - engine.names(), context_msg
        return removed, doc

    removed, _ = run("1h")
    assert removed == set(), context_msg

    removed, doc = run("1m")
    expected_old = {n for n, (state, extra) in pool.items() if prunable(state, extra)}
    assert removed == expected_old, context_msg
    assert aged_pool["late_stopper"] not in removed, context_msg  # Created is old, but it stopped just now
    assert {"old-0-exited", "old-1-created"} <= removed
    for name in {n for n, (s, e) in {**pool, **young}.items() if (e.get("labels") or {}).get("containai.keep") == "true"}:
        assert {"name": name, "reason": "containai.keep=true"}.items() <= \
            next(p for p in doc["protected"] if p["name"] == name).items(), context_msg

    for i in range(4):
        state, extra = rng.choice(KINDS)
        engine.make(state, name=f"newest-{i}-{state}", **extra)
        young[f"newest-{i}-{state}"] = (state, extra)
    removed, _ = run("0m")
    expected_rest = {n for n, (state, extra) in young.items() if prunable(state, extra)} | {aged_pool["late_stopper"]}
    assert removed == expected_rest, context_msg
    survivors = {n for n, (state, extra) in {**pool, **young}.items() if not prunable(state, extra)} - {aged_pool["late_stopper"]}
    assert engine.names() == survivors, context_msg
