"""docs/json.md lists exactly the fields the commands print: each documented table is compared
with a real document from the engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cai

JSON_DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"


def documented_fields(command: str) -> set[str]:
    text = JSON_DOC.read_text()
    section = text.split(f"## {command} --json", 1)[1].split("\n## ", 1)[0]
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


def check(command: str, document: dict) -> None:
    documented, real = documented_fields(command), flatten(document)
    assert real - documented == set(), f"{command}: printed but not in docs/json.md"
    top = {f for f in documented if "." not in f and "[]" not in f}
    assert top == set(document), f"{command}: docs/json.md and the output differ at the top level"
    assert document["schema_version"] == 1


def test_status(home, ws):
    _, name = ws
    done = run_cai(home, "status", "--container", name, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert {"sessions", "resources", "uptime"} <= set(document)  # a running container shows them all
    check("cai status", document)


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
                                     "cai doctor", "cai ssh cleanup"])
def test_every_documented_field_has_a_type_and_meaning_column(command):
    section = JSON_DOC.read_text().split(f"## {command} --json", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows and all(line.count("|") == 4 for line in rows)
