"""Issue 24 §4: a local directory the agent can write (the workspace) is read from descriptors,
never through a path: a directory swapped for a link to ~/.ssh, between the scan and the stream
or during the scan, sends nothing of it. Real files and real renames, no mocks."""

from __future__ import annotations

import ctypes
import os
import threading

import pytest

from cai import archives
from cai.errors import CaiError

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the agent"


@pytest.fixture()
def tree(tmp_path):
    """src/sub/notes.txt, the agent's; home/.ssh/notes.txt, the user's, of the same size."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "notes.txt").write_bytes(b"x" * len(SECRET))
    (src / "top.txt").write_bytes(b"top")
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "notes.txt").write_bytes(SECRET)
    (ssh / "id_ed25519").write_bytes(SECRET)
    return src, ssh


def streamed(source, plan) -> bytes:
    """The stream as far as it gets; what was produced before a refusal counts as sent."""
    sent = bytearray()
    try:
        for chunk in archives.tar_stream(source, plan, "p"):
            sent += chunk
    except CaiError:
        pass
    return bytes(sent)


def test_a_directory_swapped_for_a_link_between_scan_and_stream_sends_nothing_of_it(tree):
    src, ssh = tree
    source = archives.Source(src)
    try:
        plan = archives.scan(source, [])
        (src / "sub").rename(src / "sub.old")
        (src / "sub").symlink_to(ssh)
        with pytest.raises(CaiError, match="changed while it was imported"):
            b"".join(archives.tar_stream(source, plan, "p"))
        assert SECRET not in streamed(source, plan)
    finally:
        source.close()


def test_a_directory_swapped_for_a_link_during_the_scan_fails_the_scan(tree):
    src, ssh = tree
    source = archives.Source(src)
    try:
        with pytest.raises(CaiError, match="sub.* changed while it was imported"):
            for member in source.members():
                if member.name == "sub":  # listed as a directory; not yet walked into
                    (src / "sub").rename(src / "sub.old")
                    (src / "sub").symlink_to(ssh)
    finally:
        source.close()


def test_a_link_to_a_directory_is_a_link_and_nothing_below_it_is_read(tree):
    src, ssh = tree
    (src / "keys").symlink_to(ssh)
    source = archives.Source(src)
    try:
        plan = archives.scan(source, [])
        assert {(e.rel, e.kind) for e in plan.entries} == {("keys", "symlink"), ("sub", "dir"), ("sub/notes.txt", "file"),
                                                           ("top.txt", "file")}
        assert SECRET not in b"".join(archives.tar_stream(source, plan, "p"))
    finally:
        source.close()


_RENAME_EXCHANGE = 2


def _exchange(libc, a: bytes, b: bytes) -> None:
    if libc.renameat2(-100, a, -100, b, _RENAME_EXCHANGE) != 0:  # AT_FDCWD
        raise OSError(ctypes.get_errno(), "renameat2")


def test_a_directory_flipping_with_a_link_all_along_never_sends_the_link_target(tree):
    """An agent that swaps `sub` and a link to ~/.ssh back and forth (renameat2 RENAME_EXCHANGE,
    atomic) while cai scans and streams, again and again: no run ever sends the user's key."""
    src, ssh = tree
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("no renameat2 in this libc")
    (src / "flip").symlink_to(ssh)
    a, b = bytes(src / "sub"), bytes(src / "flip")
    try:
        _exchange(libc, a, b)
        _exchange(libc, a, b)
    except OSError as exc:
        pytest.skip(f"this filesystem cannot exchange: {exc}")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            _exchange(libc, a, b)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    outcomes = {"sent": 0, "refused": 0}
    try:
        for _ in range(300):
            source = archives.Source(src)
            try:
                plan = archives.scan(source, [])
                data = b"".join(archives.tar_stream(source, plan, "p"))
            except CaiError:
                outcomes["refused"] += 1
                continue
            finally:
                source.close()
            outcomes["sent"] += 1
            assert SECRET not in data, outcomes
    finally:
        stop.set()
        flipper.join()
    assert outcomes["sent"] + outcomes["refused"] == 300
