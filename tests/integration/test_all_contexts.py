"""`cai status --all-contexts` and `cai gc --all-contexts` against real engines: two spare dockerds
(indexes 11 and 12, this file's alone), a socket that accepts and never answers, one that answers
a byte at a time and never finishes, and dead ones. Where the output must be exact, or gc may
remove, the default context's socket is hidden in a private mount namespace, so the shared
engine is neither listed nor touched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import run_cai
from test_json_docs import check

BUDGET_S = 5.0
START_UP_S = 3.0  # python, imports and the docker CLI's context store, on a loaded machine


@pytest.fixture(scope="module")
def spares(spare_engine):
    return spare_engine(11), spare_engine(12)


@pytest.fixture()
def engines(spares, isolated_home):
    for spare in spares:
        spare.reset()
        spare.add_context(isolated_home)
    return spares


def add_context(home, name: str, host: str) -> None:
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    subprocess.run(["docker", "context", "create", name, "--docker", f"host={host}"],
                   check=True, capture_output=True, env=env, timeout=30)


class Listener:
    """A unix socket that accepts every connection; `answer(conn)` is what it then does."""

    def __init__(self, path, answer):
        self.path, self.answer, self.held, self.stop = str(path), answer, [], threading.Event()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.path)
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn = self.server.accept()[0]
            except OSError:
                continue
            self.held.append(conn)
            threading.Thread(target=self.answer, args=(conn, self.stop), daemon=True).start()

    def close(self):
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.server.close()


def _silent(conn, stop):
    """Reads the request and says nothing."""


def _trickle(conn, stop):
    """A status line, then a header one byte every 0.5 s: each read gets data well inside the
    client's timeout, so only cai's own budget can end the wait."""
    try:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not stop.wait(0.5):
            conn.sendall(b"a")
    except OSError:
        pass


@pytest.fixture()
def silent_engine(tmp_path):
    listener = Listener(tmp_path / "silent.sock", _silent)
    yield f"unix://{listener.path}"
    listener.close()


@pytest.fixture()
def trickling_engine(tmp_path):
    listener = Listener(tmp_path / "trickle.sock", _trickle)
    yield f"unix://{listener.path}"
    listener.close()


@pytest.fixture()
def refused_engine(tmp_path):
    """A socket file nobody listens on."""
    path = tmp_path / "refused.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


def cai_without_default(home, *argv, timeout: float = 120):
    """run_cai, in a mount namespace where /var/run/docker.sock (the default context) is a plain
    file: that context refuses, and the shared engine is out of reach."""
    blocker = home / "no-default-engine"
    blocker.touch()
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    env.pop("XDG_CONFIG_HOME", None)
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$0" /var/run/docker.sock && exec "$@"', str(blocker), sys.executable, "-m", "cai", *argv],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout,
    )
    return done, time.monotonic() - started


def timed_cai(home, *argv):
    started = time.monotonic()
    done = run_cai(home, *argv)
    return done, time.monotonic() - started


DEFAULT_HIDDEN = {"context": "default", "reason": "Docker Desktop is not running"}


# --- status --all-contexts -------------------------------------------------------------------


def test_status_shows_every_context_and_a_silent_one_costs_at_most_its_budget(engines, isolated_home, silent_engine):
    e11, e12 = engines
    e11.make("running", name="ac-run", labels={"containai.workspace": "/src/one", "containai.ssh-port": "2301"})
    e11.make("exited", name="ac-stopped")
    e11.make("exited", name="ac-foreign", managed=None)
    e11.make("running", name="ac-helper", labels={"containai.helper": "true"})
    e12.make("created", name="ac-new")
    add_context(isolated_home, "ac-silent", silent_engine)

    done, elapsed = timed_cai(isolated_home, "status", "--all-contexts")
    assert done.returncode == 0, done.stderr
    assert elapsed < BUDGET_S + START_UP_S
    assert "[WARN] context ac-silent: Docker command timed out" in done.stderr.splitlines()
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CONTEXT", "NAME", "STATUS", "IMAGE", "SSH", "PORT", "WORKSPACE"]
    ours = [line.split() for line in lines[1:] if line.startswith("cai-spare-")]
    assert ours == [
        ["cai-spare-11", "ac-run", "running", "cai-tiny:sleep", "2301", "/src/one"],
        ["cai-spare-11", "ac-stopped", "exited", "cai-tiny:sleep", "-", "-"],
        ["cai-spare-12", "ac-new", "created", "cai-tiny:sleep", "-", "-"],
    ]
    assert not any(line.startswith("ac-silent") for line in lines)

    done, elapsed = timed_cai(isolated_home, "status", "--all-contexts", "--json")
    assert done.returncode == 0, done.stderr
    assert elapsed < BUDGET_S + START_UP_S
    document = json.loads(done.stdout)
    check("cai status --all-contexts", document)
    assert {"cai-spare-11", "cai-spare-12", "default"} <= set(document["contexts"])  # the shared engine answers too
    assert document["unreachable"] == [{"context": "ac-silent", "reason": "Docker command timed out"}]
    ours = [row for row in document["containers"] if row["context"].startswith("cai-spare-")]
    ids = {c.name: c.id for spare in engines for c in spare.client.containers.list(all=True)}
    assert ours == [
        {"context": "cai-spare-11", "name": "ac-run", "id": ids["ac-run"], "status": "running", "image": "cai-tiny:sleep",
         "workspace": "/src/one", "workspace_mount": None, "ssh_port": 2301},
        {"context": "cai-spare-11", "name": "ac-stopped", "id": ids["ac-stopped"], "status": "exited",
         "image": "cai-tiny:sleep", "workspace": None, "workspace_mount": None, "ssh_port": None},
        {"context": "cai-spare-12", "name": "ac-new", "id": ids["ac-new"], "status": "created", "image": "cai-tiny:sleep",
         "workspace": None, "workspace_mount": None, "ssh_port": None},
    ]


def test_a_context_that_never_finishes_answering_is_cut_at_5_s(engines, isolated_home, trickling_engine):
    """The trickle defeats every client timeout: only the budget ends the wait, and cai exits
    without waiting for the thread that still reads."""
    e11, _ = engines
    e11.make("exited", name="ac-beside")
    add_context(isolated_home, "ac-trickle", trickling_engine)
    for argv in (("status", "--all-contexts", "--json"), ("gc", "--all-contexts", "--dry-run", "--age", "0m", "--json")):
        done, elapsed = cai_without_default(isolated_home, *argv)
        assert done.returncode == 0, done.stderr
        assert BUDGET_S - 0.1 < elapsed < BUDGET_S + START_UP_S, argv
        document = json.loads(done.stdout)
        assert document["unreachable"] == [{"context": "ac-trickle", "reason": "no answer within 5 s"}, DEFAULT_HIDDEN]
        assert done.stderr.splitlines() == ["[WARN] context ac-trickle: no answer within 5 s",
                                            "[WARN] context default: Docker Desktop is not running"]
        rows = document["containers"] if argv[0] == "status" else document["candidates"]
        assert [(row["context"], row["name"]) for row in rows] == [("cai-spare-11", "ac-beside")]


def test_when_no_context_answers_the_document_still_comes_and_the_code_is_the_engines(isolated_home, refused_engine):
    add_context(isolated_home, "ac-refused", refused_engine)
    gone = [{"context": "ac-refused", "reason": "Docker Desktop is not running"}, DEFAULT_HIDDEN]
    warnings = ["[WARN] context ac-refused: Docker Desktop is not running",
                "[WARN] context default: Docker Desktop is not running",
                "[ERROR] No Docker context answered (2 tried)"]

    done, _ = cai_without_default(isolated_home, "status", "--all-contexts")
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", warnings)

    done, _ = cai_without_default(isolated_home, "status", "--all-contexts", "--json")
    assert done.returncode == 1 and done.stderr.splitlines() == warnings
    assert json.loads(done.stdout) == {"schema_version": 1, "contexts": [], "containers": [], "unreachable": gone,
                                        "same_engine": []}

    done, _ = cai_without_default(isolated_home, "gc", "--all-contexts", "--dry-run", "--json")
    assert done.returncode == 1 and done.stderr.splitlines() == warnings
    document = json.loads(done.stdout)
    assert (document["contexts"], document["candidates"], document["unreachable"]) == ([], [], gone)


def test_a_local_socket_is_never_explained_in_another_contexts_ssh_words(engines, isolated_home, silent_engine):
    """The silent socket times out 4 s in, long after ssh has failed and left its complaint."""
    add_context(isolated_home, "ac-silent", silent_engine)
    add_context(isolated_home, "ac-ssh", "ssh://root@127.0.0.1:1")  # nothing listens on port 1
    done, _ = timed_cai(isolated_home, "status", "--all-contexts", "--json")
    assert done.returncode == 0, done.stderr
    reasons = {item["context"]: item["reason"] for item in json.loads(done.stdout)["unreachable"]}
    assert reasons["ac-silent"] == "Docker command timed out"
    assert reasons["ac-ssh"].startswith("Cannot reach the Docker engine over SSH: ssh: connect to host 127.0.0.1 port 1")


# --- gc --all-contexts -----------------------------------------------------------------------


def test_gc_dry_run_lists_each_contexts_plan_with_its_context(engines, isolated_home, silent_engine):
    e11, e12 = engines
    e11.make("exited", name="ac-gc-stale")
    e11.make("running", name="ac-gc-busy")
    e11.make("exited", name="ac-gc-kept", labels={"containai.keep": "true"})
    e11.make("running", name="ac-gc-odd", labels={"containai.keep": "maybe"})
    e11.make_image("containai:ac-unused")
    e12.make("created", name="ac-gc-new")
    add_context(isolated_home, "ac-silent", silent_engine)
    before = [spare.names() for spare in engines]

    done, elapsed = cai_without_default(isolated_home, "gc", "--all-contexts", "--dry-run", "--age", "0m", "--images")
    assert done.returncode == 0, done.stderr
    assert elapsed < BUDGET_S + START_UP_S
    assert done.stdout.splitlines() == [
        "Stale ContainAI resources (contexts: cai-spare-11, cai-spare-12, age >= 0m):", "",
        "Containers:", "  ac-gc-stale (exited, age: 0h) [context: cai-spare-11]",
        "  ac-gc-new (created, age: 0h) [context: cai-spare-12]", "",
        "Unused images:", "  containai:ac-unused [context: cai-spare-11]", "",
        "[DRY-RUN] Would remove 2 container(s) and 1 image(s)",
    ]
    assert done.stderr.splitlines() == [
        "[WARN] context ac-silent: Docker command timed out",
        "[WARN] context default: Docker Desktop is not running",
        "[WARN] ac-gc-odd: containai.keep=maybe protects nothing (use true, 1 or yes) [context: cai-spare-11]",
    ]

    done, _ = cai_without_default(isolated_home, "gc", "--all-contexts", "--dry-run", "--age", "0m", "--images", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    check("cai gc --all-contexts", document)
    assert [c["context"] for c in document["contexts"]] == ["cai-spare-11", "cai-spare-12"]
    assert [(c["context"], c["name"], c["status"]) for c in document["candidates"]] == [
        ("cai-spare-11", "ac-gc-stale", "exited"), ("cai-spare-12", "ac-gc-new", "created")]
    assert sorted((p["context"], p["name"], p["reason"]) for p in document["protected"]) == [
        ("cai-spare-11", "ac-gc-busy", "running"), ("cai-spare-11", "ac-gc-kept", "containai.keep=true"),
        ("cai-spare-11", "ac-gc-odd", "running")]
    assert [(i["context"], i["reference"]) for i in document["images"]] == [("cai-spare-11", "containai:ac-unused")]
    assert document["unrecognized_keep"] == [{"context": "cai-spare-11", "name": "ac-gc-odd", "value": "maybe"}]
    assert document["unreachable"] == [{"context": "ac-silent", "reason": "Docker command timed out"}, DEFAULT_HIDDEN]
    assert (document["dry_run"], document["cancelled"], document["errors"]) == (True, False, [])
    assert [spare.names() for spare in engines] == before


def test_gc_force_removes_in_every_context_that_answered(engines, isolated_home, refused_engine):
    e11, e12 = engines
    e11.make("exited", name="ac-f-old")
    e12.make("exited", name="ac-f-older")
    e12.make("running", name="ac-f-busy")
    add_context(isolated_home, "ac-refused", refused_engine)

    done, _ = cai_without_default(isolated_home, "gc", "--all-contexts", "--age", "0m")  # no terminal, no --force
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "Cancelled."
    assert (e11.names(), e12.names()) == ({"ac-f-old"}, {"ac-f-older", "ac-f-busy"})

    done, _ = cai_without_default(isolated_home, "gc", "--all-contexts", "--force", "--age", "0m", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    check("cai gc --all-contexts", document)
    assert document["removed"] == {"containers": [{"context": "cai-spare-11", "name": "ac-f-old"},
                                                  {"context": "cai-spare-12", "name": "ac-f-older"}],
                                   "images": [], "helpers": []}
    assert document["unreachable"] == [{"context": "ac-refused", "reason": "Docker Desktop is not running"}, DEFAULT_HIDDEN]
    assert (e11.names(), e12.names()) == (set(), {"ac-f-busy"})


def test_two_contexts_on_one_engine_are_listed_and_pruned_once(engines, isolated_home):
    e11, _ = engines
    e11.make("exited", name="ac-s-old")
    e11.make_image("containai:ac-s-unused")
    add_context(isolated_home, "ac-s-again", e11.host)  # sorts before cai-spare-11

    done, _ = cai_without_default(isolated_home, "status", "--all-contexts", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [(r["context"], r["name"]) for r in document["containers"]] == [("ac-s-again", "ac-s-old")]
    assert document["same_engine"] == [{"context": "cai-spare-11", "same_as": "ac-s-again"}]
    assert "[WARN] context cai-spare-11: the same engine as context ac-s-again; shown once" in done.stderr.splitlines()

    done, _ = cai_without_default(isolated_home, "gc", "--all-contexts", "--force", "--images", "--age", "0m", "--json")
    assert done.returncode == 0, done.stderr  # the image once, not a second "No such image"
    document = json.loads(done.stdout)
    assert document["removed"]["containers"] == [{"context": "ac-s-again", "name": "ac-s-old"}]
    assert document["removed"]["images"] == [{"context": "ac-s-again", "reference": "containai:ac-s-unused"}]
    assert document["errors"] == [] and document["same_engine"] == [{"context": "cai-spare-11", "same_as": "ac-s-again"}]
    assert e11.names() == set()
