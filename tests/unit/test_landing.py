"""cai.landing: what an agent's tar stream may and may not do to DEST, on this Python and on
Debian 12's own (tarfile without extraction filters)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

import hostile_tars
from cai import landing
from cai.errors import CaiError

REPO = Path(__file__).resolve().parents[2]  # tests/hostile_tars.py runs this checkout under another Python
DEBIAN_PYTHON = "/usr/bin/python3"


@pytest.mark.parametrize("case", sorted(hostile_tars.refused_cases()))
def test_a_hostile_stream_is_refused_whole_and_nothing_outside_changes(case):
    stream, named = hostile_tars.refused_cases()[case]
    report = hostile_tars.run_case(stream)
    assert report["code"] == 1
    assert named in report["said"], report["said"]
    assert report["outside_changed"] == [] and report["leftovers"] == [] and not report["dest_exists"]


def test_debian_python_refuses_the_same_streams():
    if not os.path.exists(DEBIAN_PYTHON):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{DEBIAN_PYTHON} is missing: CI runs the archive tests with Debian's own Python")
        pytest.skip(f"no {DEBIAN_PYTHON}")
    done = subprocess.run([DEBIAN_PYTHON, str(Path(hostile_tars.__file__)), str(REPO)], capture_output=True, text=True,
                          timeout=120, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report.pop("python").startswith("3.")
    good = report.pop("good tree")
    assert (good["code"], good["outside_changed"], good["leftovers"]) == (0, [], [])
    for case, (_, named) in hostile_tars.refused_cases().items():
        assert report[case]["code"] == 1 and named in report[case]["said"], (case, report[case])
        assert report[case]["outside_changed"] == [] and not report[case]["dest_exists"], case


def land(stream: bytes, into: Path, name: str = hostile_tars.TOP) -> int:
    into_fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY)
    return landing.land(io.BufferedReader(io.BytesIO(stream)), hostile_tars.TOP, into_fd, str(into), name,
                        sender="what box sent")


@pytest.fixture()
def into(tmp_path):
    """An empty directory of its own (tmp_path also holds the test's HOME)."""
    made = tmp_path / "into"
    made.mkdir()
    return made


def test_a_real_tree_lands_whole(into):
    assert land(hostile_tars.good_tree(), into, "out") == 20
    out = into / "out"
    assert os.readlink(out / "venv/lib64") == "lib" and (out / "venv/lib64/site.py").read_text() == "print('site')\n"
    assert (out / "node_modules/.bin/pkg").read_bytes() == b"#!/usr/bin/env node\n"
    assert stat.S_IMODE((out / "node_modules/pkg/cli.js").stat().st_mode) == 0o755
    assert (out / "hard-a").stat().st_ino == (out / "hard-b").stat().st_ino
    for form in ("NFC", "NFD"):
        assert (out / f"{unicodedata.normalize(form, 'café')}.txt").exists()
    assert (out / "new\nline and space").read_text() == "odd\n"
    assert (out / "/".join(["level"] * 30) / "bottom.txt").read_text() == "deep\n"
    assert stat.S_IMODE((out / "setuid").stat().st_mode) == 0o755  # setuid and group/other write dropped
    assert stat.S_IMODE((out / "locked").stat().st_mode) == 0o700  # the user can always clean up
    assert os.readlink(out / "dangling-inside") == "not-there-yet"
    assert sorted(p.name for p in into.iterdir()) == ["out"]  # no staging left behind


def test_a_file_replaces_a_file_and_a_link_without_following_it(into):
    one_file = hostile_tars._tar((hostile_tars.TOP, "file", b"new\n"))
    (into / "report").write_text("old\n")
    (into / "secret").write_text("secret\n")
    (into / "via-link").symlink_to("secret")
    assert land(one_file, into, "report") == 1 and (into / "report").read_text() == "new\n"
    assert land(one_file, into, "via-link") == 1
    assert (into / "via-link").read_text() == "new\n" and not (into / "via-link").is_symlink()
    assert (into / "secret").read_text() == "secret\n"


def test_into_an_existing_directory_merges_and_a_conflict_changes_nothing(into):
    top = hostile_tars.TOP
    (into / "out" / "keep").mkdir(parents=True)
    (into / "out" / "keep" / "mine.txt").write_text("mine\n")
    (into / "out" / "a.txt").write_text("old\n")
    (into / "outside.txt").write_text("outside\n")
    (into / "out" / "planted").symlink_to("../outside.txt")
    stream = hostile_tars._tar((top, "dir"), (f"{top}/a.txt", "file", b"new\n"), (f"{top}/keep", "dir"),
                               (f"{top}/keep/theirs.txt", "file"), (f"{top}/planted", "file", b"replaced\n"))
    assert land(stream, into, "out") == 5
    assert (into / "out/a.txt").read_text() == "new\n"
    assert sorted(p.name for p in (into / "out/keep").iterdir()) == ["mine.txt", "theirs.txt"]
    assert (into / "out/planted").read_text() == "replaced\n" and not (into / "out/planted").is_symlink()
    assert (into / "outside.txt").read_text() == "outside\n"

    conflicting = hostile_tars._tar((top, "dir"), (f"{top}/new.txt", "file"), (f"{top}/a.txt", "dir"))
    with pytest.raises(CaiError) as refused:
        land(conflicting, into, "out")
    assert refused.value.code == 1 and "out/a.txt" in refused.value.message
    assert not (into / "out/new.txt").exists() and (into / "out/a.txt").read_text() == "new\n"
    assert sorted(p.name for p in into.iterdir()) == ["out", "outside.txt"]


def test_a_directory_never_replaces_a_file_nor_the_reverse(into):
    top = hostile_tars.TOP
    (into / "file").write_text("x\n")
    (into / "dir").mkdir()
    with pytest.raises(CaiError, match="over the file"):
        land(hostile_tars._tar((top, "dir"), (f"{top}/x", "file")), into, "file")
    with pytest.raises(CaiError, match="over the directory"):
        land(hostile_tars._tar((top, "file")), into, "dir")
    assert (into / "file").read_text() == "x\n" and list((into / "dir").iterdir()) == []


def test_a_huge_header_is_refused_before_it_is_read(tmp_path):
    """The refusal comes from the size the header claims: the stream behind it is never read."""

    class Endless(io.RawIOBase):
        served = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Endless.served += len(buffer)
            buffer[:] = b"x" * len(buffer)
            return len(buffer)

    head = hostile_tars._huge_pax_header()[:512]
    stream = io.BufferedReader(io.BufferedReader(io.BytesIO(head)))

    class Joined(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            piece = stream.read(len(buffer)) or Endless().read(len(buffer))
            buffer[:len(piece)] = piece
            return len(piece)

    with pytest.raises(CaiError, match="claims 2147483648 bytes"):
        landing.land(io.BufferedReader(Joined()), hostile_tars.TOP, os.open(tmp_path, os.O_RDONLY), str(tmp_path), "out",
                     sender="what box sent")
    assert Endless.served < 1 << 21


def test_two_copies_merged_cannot_bend_a_link_out(into):
    """The first copy leaves deep/…/y pointing back up to the top; the second's link climbs through
    deep/…/y, which its own stream does not hold: cai refuses to judge it by name."""
    top, depth = hostile_tars.TOP, 20
    deep = "/".join(["d"] * depth)
    first = hostile_tars._tar((top, "dir"), *[(f"{top}/" + "/".join(["d"] * n), "dir") for n in range(1, depth + 1)],
                              (f"{top}/{deep}/y", "sym", "/".join([".."] * depth)))
    assert land(first, into) == depth + 2
    second = hostile_tars._tar((top, "dir"), (f"{top}/root", "sym", f"{deep}/y/" + "/".join([".."] * depth)))
    with pytest.raises(CaiError, match="root"):
        land(second, into)
    assert not (into / top / "root").exists() and not (into / top / "root").is_symlink()


def test_chained_links_through_a_deep_tree_cost_bounded_steps(into):
    """Thousands of links that each climb a deep tree: refused once the copy's budget is spent,
    in seconds, not minutes."""
    import time

    top, depth = hostile_tars.TOP, 200
    deep = "/".join(["d"] * depth)
    members = [(top, "dir"), *[(f"{top}/" + "/".join(["d"] * n), "dir") for n in range(1, depth + 1)]]
    members += [(f"{top}/{deep}/l{index}", "sym", "/".join([".."] * depth) + f"/{deep}/" + "/".join([".."] * depth))
                for index in range(2000)]
    started = time.monotonic()
    with pytest.raises(CaiError, match="steps to judge"):
        land(hostile_tars._tar(*members), into)
    assert time.monotonic() - started < 30


def test_a_merge_the_agent_races_says_it_stopped_part_way_and_writes_through_no_link(into, monkeypatch):
    """An agent that writes DEST swaps a checked directory for a link to /etc after the check."""
    top = hostile_tars.TOP
    (into / "out" / "z").mkdir(parents=True)
    outside = into / "outside"
    outside.mkdir()
    checked = landing._merge_conflict

    def check_then_swap(*args):
        found = checked(*args)
        if args[2] == "out":
            (into / "out" / "z").rmdir()
            (into / "out" / "z").symlink_to(outside)
        return found

    monkeypatch.setattr(landing, "_merge_conflict", check_then_swap)
    stream = hostile_tars._tar((top, "dir"), (f"{top}/a", "file"), (f"{top}/z", "dir"), (f"{top}/z/inner", "file"))
    with pytest.raises(CaiError, match="stopped part-way"):
        land(stream, into, "out")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in into.iterdir()) == ["out", "outside"]  # no staging left


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a root-owned link and an agent-owned one (CI runs as root)")
def test_a_root_owned_link_is_followed_by_the_same_rule(tmp_path):
    """A system link is followed, but not through a link of the agent's on its way."""
    from cai import local_paths

    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_text("KEY\n")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "sub").symlink_to("../secret")
    os.lchown(tmp_path / "ws" / "sub", 1000, 1000)  # the agent's
    (tmp_path / "ws" / "via-root").symlink_to("sub/key")  # root's, through the agent's
    (tmp_path / "real").mkdir()
    (tmp_path / "ws" / "fine").symlink_to("../real")  # root's, to a real directory
    workspace = local_paths.open_directory(str(tmp_path / "ws"))
    try:
        with pytest.raises(CaiError, match="is a symbolic link"):
            local_paths.open_file_in(workspace, "via-root", "via-root")
        assert local_paths.kind_in(workspace, "fine", "fine") == "dir"
    finally:
        os.close(workspace)
