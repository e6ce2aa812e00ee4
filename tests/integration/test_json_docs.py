"""docs/json.md lists exactly the fields the commands print: each documented table is compared
with a real document from the engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cai

JSON_DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"


def section_of(command: str) -> str:
    """The section `## COMMAND --json`, else `## COMMAND` (`cai ps --format json`, `cai inspect`)."""
    text = JSON_DOC.read_text()
    heading = next(h for h in (f"## {command} --json\n", f"## {command}\n") if h in text)
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def documented_fields(command: str) -> set[str]:
    section = section_of(command)
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


def flatten(value, prefix=""):
    """`a`, `a.b` for objects, `a[].b` for the objects in lists."""
    fields = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            name = f"{prefix}.{key}" if prefix else key
            fields.add(name)
            fields |= flatten(inner, name)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                fields |= flatten(item, f"{prefix}[]")
    return fields


def check(command: str, document: dict, version: int = 1) -> None:
    documented, real = documented_fields(command), flatten(document)
    assert real - documented == set(), f"{command}: printed but not in docs/json.md"
    top = {f for f in documented if "." not in f and "[]" not in f}
    assert top == set(document), f"{command}: docs/json.md and the output differ at the top level"
    assert document["schema_version"] == version


def test_status(home, ws):
    _, name = ws
    done = run_cai(home, "status", "--container", name, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert {"sessions", "resources", "uptime", "uptime_seconds"} <= set(document)  # a running container shows them all
    assert {"memory_percent", "cpu_percent"} <= set(document["resources"])
    check("cai status", document, version=2)


def test_ps_port_and_inspect(home, ws):
    _, name = ws
    listed = run_cai(home, "ps", "--format", "json", "--filter", f"name={name}", "--all-contexts")  # all the fields
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert name in [row["name"] for row in document["containers"]] and "unreachable" in document
    check("cai ps --format json", document, version=2)
    ports = run_cai(home, "port", "--container", name, "--json")
    assert ports.returncode == 0, ports.stderr
    check("cai port", json.loads(ports.stdout))
    inspected = json.loads(run_cai(home, "inspect", "--container", name).stdout)
    assert inspected["Id"] and inspected["cai"]["sessions"]
    check("cai inspect", {"schema_version": inspected["schema_version"], "cai": inspected["cai"]}, version=2)


def test_doctor(home):
    done = run_cai(home, "doctor", "--json")
    assert done.returncode == 0, done.stderr
    check("cai doctor", json.loads(done.stdout))


def test_gc(tmp_path, spare_engine):
    engine = spare_engine(3)
    engine.reset()
    context = engine.add_context(tmp_path)
    engine.make("exited", name="json-stale")
    engine.make("running", name="json-busy")
    engine.make_image("containai:json-unused")
    done = run_cai(tmp_path, "gc", "--context", context, "--json", "--dry-run", "--images", "--age", "0m")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["candidates"] and document["protected"] and document["images"]
    check("cai gc", document)


def test_ssh_cleanup(home, tmp_path):
    conf_dir = tmp_path / ".ssh" / "containai.d"
    conf_dir.mkdir(parents=True)
    (conf_dir / "json-gone.conf").write_text("# ContainAI SSH config for container: json-gone\nHost json-gone\n    Port 2333\n")
    done = run_cai(tmp_path, "ssh", "cleanup", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["removed"] == [{"name": "json-gone", "port": 2333}]
    check("cai ssh cleanup", document)


@pytest.mark.parametrize("command", ["cai status", "cai status --all-contexts", "cai gc", "cai gc --all-contexts",
                                     "cai doctor", "cai ssh cleanup", "cai ps --format json", "cai port", "cai inspect"])
def test_every_documented_field_has_a_type_and_meaning_column(command):
    section = section_of(command)
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows and all(line.count("|") == 4 for line in rows)


JSON_COMMANDS = [("gc", "--json"), ("gc", "--dry-run", "--json"), ("gc", "--force", "--age", "14d", "--json"),
                 ("status", "--json"), ("ssh", "cleanup", "--json"), ("ps", "--format", "json"), ("port", "--json"),
                 ("inspect",), ("session", "ls", "--json"), ("session", "prune", "--json")]


@pytest.mark.parametrize("argv", JSON_COMMANDS, ids=" ".join)
def test_a_json_command_prints_its_document_when_the_engine_does_not_answer(tmp_path, argv):
    """docs/gc.md's cron line must not write an empty file on the night the engine is down."""
    import subprocess

    home = tmp_path / "home"
    subprocess.run(["docker", "context", "create", "dead", "--docker", f"host=unix://{tmp_path}/no-engine.sock"],
                   env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")},
                   check=True, capture_output=True, timeout=30)
    done = run_cai(home, "--context", "dead", *argv, "--container", "x") if argv[0] in ("port", "inspect", "status", "session") \
        else run_cai(home, "--context", "dead", *argv)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    said = "No Docker daemon is reachable" if argv[0] == "ssh" else "Docker Desktop is not running"  # the original's words
    assert document["error"] == {"kind": "engine_not_running", "message": said, "exit_code": 1,
                                 "details": document["error"]["details"]}
    assert f"[ERROR] {said}\n" in done.stderr
    assert set(document) == {"schema_version", "error"}
    assert document["schema_version"] == (2 if argv[0] in ("status", "ps", "inspect") else 1)
    assert flatten(document) == documented_fields("When a command fails")


def test_the_examples_in_the_docs_have_the_documented_fields():
    """An example is a claim too: each JSON block of gc.md and json.md has exactly its command's
    top-level fields and no field the tables do not list."""
    docs = JSON_DOC.parent
    gc_example = json.loads(re.search(r"```json\n(.*?)```", (docs / "gc.md").read_text(), re.DOTALL)[1].replace("…", ""))
    check("cai gc", gc_example)
    text = JSON_DOC.read_text()
    for heading, version in (("cai status --json", 2), ("When a command fails", 1)):
        body = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        check(heading.removesuffix(" --json"), json.loads(re.search(r"```json\n(.*?)```", body, re.DOTALL)[1]), version)


def test_ssh_config(home, ws):
    _, name = ws
    done = run_cai(home, "ssh-config", name, "--json")
    assert done.returncode == 0, done.stderr
    check("cai ssh-config", json.loads(done.stdout))
