"""`--all-contexts`: context discovery, the side-by-side budget, reasons, merging, ordering, the
JSON shapes and the usage errors. The engines here are fakes; tests/integration/test_all_contexts.py
runs the real ones."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from cai import all_contexts, docker_py, engine
from cai import pruning as gc
from cai.commands import status
from cai.main import cli

def write_context(home, name, host="unix:///nonexistent.sock"):
    meta = home / ".docker" / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
    }))
    return meta


# --- which contexts ------------------------------------------------------------------------------


def test_known_contexts_are_default_and_the_store_sorted(isolated_home):
    assert all_contexts.known_contexts() == ["default"]  # no store at all
    write_context(isolated_home, "zeta")
    write_context(isolated_home, "alpha")
    assert all_contexts.known_contexts() == ["alpha", "default", "zeta"]


def test_an_unreadable_context_is_skipped_with_a_warning_and_hides_no_other(isolated_home, capsys):
    write_context(isolated_home, "good")
    broken = isolated_home / ".docker" / "contexts" / "meta" / "f00"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    (isolated_home / ".docker" / "contexts" / "meta" / "empty-dir").mkdir()  # no meta.json: not a context
    assert all_contexts.known_contexts() == ["default", "good"]
    assert capsys.readouterr().err == f"[WARN] Unreadable Docker context metadata, skipped: {broken / 'meta.json'}\n"


# --- side by side, within the budget -------------------------------------------------------------


def test_fan_out_keeps_context_order_and_never_waits_past_the_budget(isolated_home):
    for name in ("a-fast", "b-broken", "c-slow", "d-fast"):
        write_context(isolated_home, name)
    release = threading.Event()

    def work(eng):
        if eng.context == "b-broken":
            raise engine.EngineUnavailable("timeout", "read timed out")
        if eng.context == "c-slow":
            release.wait(30)  # never released while fan_out waits
        return f"rows of {eng.context}"

    started = time.monotonic()
    answered, unreachable = all_contexts.fan_out(work, ["a-fast", "b-broken", "c-slow", "d-fast", "ghost", "bad.name"],
                                                 budget=0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 2.0
    assert answered == [("a-fast", "rows of a-fast"), ("d-fast", "rows of d-fast")]
    assert [(u.context, u.reason) for u in unreachable] == [
        ("b-broken", "Docker command timed out"),
        ("c-slow", "no answer within 0.5 s"),
        ("ghost", "Docker context or connection issue: cannot read context ghost"),
        ("bad.name", "cai does not accept this context name (alphanumeric first, then only [a-zA-Z0-9_-], at most 64 characters)"),
    ]


def test_each_context_gets_an_engine_of_its_own(isolated_home):
    write_context(isolated_home, "one")
    seen = []
    answered, _ = all_contexts.fan_out(lambda eng: seen.append(eng) or eng.context, ["default", "one"])
    assert [name for name, _ in answered] == ["default", "one"]
    assert len({id(eng) for eng in seen}) == 2 and {eng.context for eng in seen} == {"default", "one"}


def test_a_bug_in_one_context_is_that_contexts_reason(isolated_home):
    def work(eng):
        raise KeyError("Names")

    answered, unreachable = all_contexts.fan_out(work, ["default"])
    assert answered == []
    assert unreachable == [all_contexts.Unreachable("default", "Unexpected error: KeyError: 'Names'", 1)]


# --- reasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, detail, reason", [
    ("timeout", "x", "Docker command timed out"),
    ("not_running", "x", "Docker Desktop is not running"),
    ("permission", "x", "Permission denied accessing Docker"),
    ("context", "Docker context not found: c", "Docker context or connection issue: Docker context not found: c"),
    ("unknown", "boom", "Docker daemon is not accessible: boom"),
])
def test_reason_is_the_classified_first_line_and_its_detail(kind, detail, reason):
    assert all_contexts.reason(engine.EngineUnavailable(kind, detail)) == reason


def test_an_ssh_complaint_is_told_in_the_thread_that_dialled_and_once():
    import tempfile
    import threading

    class Exited:
        returncode = 255

        def wait(self, timeout=None):
            return self.returncode

    log = tempfile.TemporaryFile()
    log.write(b"ssh: connect to host 10.0.0.9 port 22: Connection refused\n")
    docker_py.thread_dials().append((Exited(), log))
    elsewhere: list[str] = []
    other = threading.Thread(target=lambda: elsewhere.append(docker_py.ssh_complaint()))
    other.start()
    other.join()
    assert elsewhere == [""]  # another context's thread does not tell it
    assert docker_py.ssh_complaint() == "ssh: connect to host 10.0.0.9 port 22: Connection refused"
    assert docker_py.ssh_complaint() == ""  # and a later failure here is not told in its words


def test_none_answered_carries_the_first_contexts_code():
    error = all_contexts.none_answered([all_contexts.Unreachable("a", "x", 13), all_contexts.Unreachable("b", "y", 1)])
    assert (error.code, error.message) == (13, "No Docker context answered (2 tried)")


# --- status --all-contexts -------------------------------------------------------------------


def listed(name, state="running", labels=None, image="containai:latest", mounts=()):
    return {"Id": f"{name}-id", "Names": [f"/{name}"], "State": state, "Image": image,
            "Labels": {"containai.managed": "true", **(labels or {})}, "Mounts": list(mounts)}


def test_rows_are_workspace_containers_sorted_by_name():
    rows = status.container_rows("big", [
        listed("zed", labels={"containai.workspace": "/src/zed", "containai.ssh-port": "2301"},
               mounts=[{"Type": "volume", "Name": "zed-data", "Destination": "/mnt/agent-data"},
                       {"Type": "volume", "Name": "zed-main-workspace", "Destination": "/home/agent/workspace"}]),
        listed("helper", labels={"containai.helper": "true"}),
        listed("alpha", state="exited", labels={"containai.ssh-port": "not-a-port"}, image=""),
    ])
    assert rows == [
        {"context": "big", "name": "alpha", "id": "alpha-id", "status": "exited", "image": "unknown",
         "workspace": None, "workspace_mount": None, "ssh_port": None},
        {"context": "big", "name": "zed", "id": "zed-id", "status": "running", "image": "containai:latest",
         "workspace": "/src/zed", "workspace_mount": "volume", "ssh_port": 2301},
    ]


def test_document_and_table_keep_context_order():
    answered = [("a-ctx", status.container_rows("a-ctx", [listed("one", labels={"containai.ssh-port": "2400"})])),
                ("default", status.container_rows("default", [listed("two", "exited", {"containai.workspace": "/w/t\x1b"})]))]
    gone = [all_contexts.Unreachable("dead", "Docker command timed out")]
    document = status.all_contexts_document(answered, gone)
    assert list(document) == ["contexts", "containers", "unreachable", "same_engine"]
    assert document["contexts"] == ["a-ctx", "default"]
    assert [(r["context"], r["name"]) for r in document["containers"]] == [("a-ctx", "one"), ("default", "two")]
    assert document["unreachable"] == [{"context": "dead", "reason": "Docker command timed out"}]
    assert status.render_table(document["containers"]) == [
        "CONTEXT  NAME  STATUS   IMAGE             SSH PORT  WORKSPACE",
        "a-ctx    one   running  containai:latest  2400      -",
        "default  two   exited   containai:latest  -         /w/t\\x1b",
    ]
    assert status.render_table([]) == ["No ContainAI containers found."]


def test_status_prints_rows_warns_per_dead_context_and_exits_0(monkeypatch, capsys):
    rows = status.container_rows("live", [listed("one")])
    monkeypatch.setattr(all_contexts, "fan_out", lambda work: ([("live", ("engine-1", rows))], [
        all_contexts.Unreachable("dead", "no answer within 5 s")]))
    assert cli(["status", "--all-contexts", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "[WARN] context dead: no answer within 5 s\n"
    document = json.loads(captured.out)
    assert document["schema_version"] == 1 and document["unreachable"] == [{"context": "dead", "reason": "no answer within 5 s"}]


def test_status_with_no_context_answering_prints_the_document_and_fails(monkeypatch, capsys):
    monkeypatch.setattr(all_contexts, "fan_out", lambda work: ([], [all_contexts.Unreachable("default", "Docker Desktop is not running")]))
    assert cli(["status", "--all-contexts", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"schema_version": 1, "contexts": [], "containers": [],
                                        "unreachable": [{"context": "default", "reason": "Docker Desktop is not running"}],
                                        "same_engine": []}
    assert captured.err.splitlines() == ["[WARN] context default: Docker Desktop is not running",
                                         "[ERROR] No Docker context answered (1 tried)"]
    assert cli(["status", "--all-contexts"]) == 1
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("argv, message", [
    (["status", "--all-contexts", "--container", "x"], "--container and --all-contexts are mutually exclusive"),
    (["status", "--all-contexts", "-w", "/tmp"], "--workspace and --all-contexts are mutually exclusive"),
    (["status", "--all-contexts", "--context", "default"], "--all-contexts and --context are mutually exclusive"),
    (["--context", "default", "status", "--all-contexts", "--json"], "--all-contexts and --context are mutually exclusive"),
    (["gc", "--all-contexts", "--dry-run", "--context", "x"], "--all-contexts and --context are mutually exclusive"),
    (["gc", "--all-contexts", "--age", "1y"], "Invalid age format: 1y (expected Nd or Nh, e.g., 30d, 7d, 24h)"),
])
def test_usage_errors(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(all_contexts, "fan_out", lambda *a, **k: pytest.fail("no engine may be asked"))
    assert cli(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[0] == f"[ERROR] {message}"


# --- gc --all-contexts -----------------------------------------------------------------------


def plan(context, *candidates, images=(), protected=()):
    made = gc.Plan(context, "0m", 0, "2024-01-15T10:30:00Z", 1_705_314_600)
    made.candidates = [gc.Candidate(name, f"{name}-id", "exited", "2024-01-15T10:00:00Z", 1800) for name in candidates]
    made.images = [gc.StaleImage(ref, "sha256:1") for ref in images]
    made.protected = [gc.Passed(name, f"{name}-id", "running", "running") for name in protected]
    return made


def test_one_list_names_each_lines_context():
    plans = [plan("a-ctx", "old", images=["containai:old"]), plan("b-ctx", "older"), plan("c-ctx")]
    assert gc.render_plans(plans, "0m") == [
        "Stale ContainAI resources (contexts: a-ctx, b-ctx, c-ctx, age >= 0m):", "",
        "Containers:", "  old (exited, age: 0h) [context: a-ctx]", "  older (exited, age: 0h) [context: b-ctx]", "",
        "Unused images:", "  containai:old [context: a-ctx]", "",
    ]
    assert gc.render_plans([plan("a-ctx")], "30d") == ["No stale resources found (contexts: a-ctx)."]


def test_merged_document_tags_every_entry_with_its_context():
    plans = [plan("a-ctx", "old", protected=["busy"]), plan("b-ctx", "older", images=["containai:x"])]
    outcomes = {"a-ctx": gc.Outcome(["old"]), "b-ctx": gc.Outcome([], [], [{"kind": "context", "name": "b-ctx", "message": "gone"}])}
    document = gc.merged_document(plans, outcomes, [{"context": "dead", "reason": "no answer within 5 s"}],
                                  age="0m", threshold_seconds=0, dry_run=False, cancelled=False)
    assert list(document) == ["contexts", "threshold", "dry_run", "cancelled", "candidates", "protected", "skipped",
                              "images", "helpers", "removed", "errors", "unrecognized_keep", "unreachable",
                              "same_engine"]
    assert document["contexts"] == [{"context": "a-ctx", "daemon_time": "2024-01-15T10:30:00Z"},
                                    {"context": "b-ctx", "daemon_time": "2024-01-15T10:30:00Z"}]
    assert [(c["context"], c["name"]) for c in document["candidates"]] == [("a-ctx", "old"), ("b-ctx", "older")]
    assert list(document["candidates"][0]) == ["context", "name", "id", "status", "reference_time", "age_seconds"]
    assert document["protected"] == [{"context": "a-ctx", "name": "busy", "id": "busy-id", "status": "running", "reason": "running"}]
    assert document["images"] == [{"context": "b-ctx", "reference": "containai:x", "id": "sha256:1"}]
    assert document["removed"] == {"containers": [{"context": "a-ctx", "name": "old"}], "images": [], "helpers": []}
    assert document["errors"] == [{"context": "b-ctx", "kind": "context", "name": "b-ctx", "message": "gone"}]
    assert document["unreachable"] == [{"context": "dead", "reason": "no answer within 5 s"}]


@pytest.fixture()
def two_plans(monkeypatch):
    plans = [plan("a-ctx", "old"), plan("b-ctx", "older")]
    monkeypatch.setattr(all_contexts, "fan_out", lambda work: ([(p.context, (p, [("warn", f"note of {p.context}")])) for p in plans],
                                                                [all_contexts.Unreachable("dead", "Docker command timed out")]))
    removed = []

    def remove_all(eng, plan, done, where=""):
        removed.append(eng.context)
        if eng.context == "a-ctx":
            raise engine.EngineUnavailable("timeout", "read timed out")
        done.removed_containers.append(plan.candidates[0].name)
        return done

    monkeypatch.setattr(gc, "remove_all", remove_all)
    return removed


def test_gc_without_force_and_without_a_terminal_never_asks_and_removes_nothing(two_plans, capsys):
    assert cli(["gc", "--all-contexts", "--age", "0m"]) == 0
    captured = capsys.readouterr()
    assert two_plans == []
    assert captured.out.splitlines()[-1] == "Cancelled."
    assert captured.err.splitlines() == ["[WARN] context dead: Docker command timed out",
                                         "[WARN] note of a-ctx [context: a-ctx]", "[WARN] note of b-ctx [context: b-ctx]"]


def test_gc_force_goes_on_after_a_context_fails_mid_way(two_plans, capsys):
    assert cli(["gc", "--all-contexts", "--force", "--age", "0m", "--json"]) == 1
    captured = capsys.readouterr()
    assert two_plans == ["a-ctx", "b-ctx"]
    document = json.loads(captured.out)
    assert document["removed"]["containers"] == [{"context": "b-ctx", "name": "older"}]
    assert document["errors"] == [{"context": "a-ctx", "kind": "context", "name": "a-ctx", "message": "Docker command timed out"}]
    assert "[WARN] context a-ctx: Docker command timed out" in captured.err.splitlines()


def test_gc_dry_run_counts_over_every_context(two_plans, capsys):
    assert cli(["gc", "--all-contexts", "--dry-run", "--age", "0m"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert two_plans == []
    assert out[-1] == "[DRY-RUN] Would remove 2 container(s) and 0 image(s)"
    assert "  older (exited, age: 0h) [context: b-ctx]" in out


def test_plan_notes_are_kept_for_the_caller_instead_of_printed(monkeypatch, capsys):
    class FakeEngine:
        context = "x"

        def call(self, method):
            assert method == "info"
            return {"SystemTime": "2024-01-15T10:30:00Z", "ID": "engine-x"}

    listed_items = [{"Id": "1", "Names": ["/odd"], "State": "running", "Created": 0,
                     "Labels": {"containai.managed": "true", "containai.keep": "maybe"}}]
    monkeypatch.setattr(engine, "list_containers", lambda eng, filters: listed_items if filters == ["containai.managed=true"] else [])
    monkeypatch.setattr(engine, "inspect_many", lambda eng, ids: {})
    notes = []
    made = gc.make_plan(FakeEngine(), "0m", 0, with_images=False, notes=notes)
    assert made.unrecognized_keep == [{"name": "odd", "value": "maybe"}]
    assert notes == [("warn", "odd: containai.keep=maybe protects nothing (use true, 1 or yes)")]
    assert capsys.readouterr().err == ""


def test_a_context_that_names_an_engine_already_seen_is_shown_once():
    answered = [("default", ("E1", ["a"])), ("desktop-linux", ("E1", ["a"])), ("big", ("E2", ["b"])), ("odd", ("", ["c"]))]
    kept, same = all_contexts.one_per_engine(answered, lambda answer: answer[0])
    assert [context for context, _ in kept] == ["default", "big", "odd"]  # an engine without an ID is its own
    assert same == [{"context": "desktop-linux", "same_as": "default"}]
