from __future__ import annotations

import io
import tarfile
from datetime import datetime

import pytest

from cai import archives, volumes
from cai.errors import CaiError


@pytest.mark.parametrize(
    ("name", "patterns", "excluded"),
    [
        ("shell", ["shell"], True),
        ("shell/bashrc.d/x", ["shell"], True),  # a directory match covers what is below
        ("a/shell/x", ["shell"], True),  # unanchored, as GNU tar's --exclude
        ("shells", ["shell"], False),
        ("secret.txt", ["secret.txt"], True),
        ("shell/bashrc.d/a.priv.sh", ["shell/bashrc.d/*.priv.*"], True),
        ("shell/bashrc.d/a.sh", ["shell/bashrc.d/*.priv.*"], False),
        ("claude/settings.json", ["shell", "secret.txt"], False),
    ],
)
def test_is_excluded(name, patterns, excluded):
    assert archives.is_excluded(name, patterns) is excluded


def test_patterns_lose_one_leading_dot_slash_then_one_slash():
    assert archives.normalize_patterns(["./shell", "/secret.txt", "", "//x", "././y"]) == ["shell", "secret.txt", "/x", "./y"]


def test_output_path_rules(tmp_path):
    now = datetime(2026, 11, 23, 9, 5, 7)
    default = "containai-export-20261123-090507.tgz"
    assert volumes.output_path(None, tmp_path, now) == tmp_path / default
    assert volumes.output_path(str(tmp_path), tmp_path, now) == tmp_path / default
    assert volumes.output_path("out.tgz", tmp_path, now) == tmp_path / "out.tgz"
    (tmp_path / "sub").mkdir()
    assert volumes.output_path("sub/", tmp_path, now) == tmp_path / "sub" / default
    with pytest.raises(CaiError, match="Output directory doesn't exist"):
        volumes.output_path(str(tmp_path / "missing" / "x.tgz"), tmp_path, now)


def _archive(path, add):
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def _file(tar, name, data=b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def _special(tar, name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def _dir(tar, name, **attrs):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info)


def _plan(path, patterns=()):
    source = archives.Source(path)
    try:
        return archives.scan(source, patterns)
    finally:
        source.close()


HOSTILE = {
    "traversal": (lambda t: _file(t, "./../escape"), "'./../escape' has a '..' component"),
    "inner traversal": (lambda t: _file(t, "./a/../../escape"), "has a '..' component"),
    "absolute": (lambda t: _file(t, "/etc/passwd"), "'/etc/passwd' has an absolute path"),
    "through a symlink": (lambda t: (_special(t, "./lnk", tarfile.SYMTYPE, "/etc"), _file(t, "./lnk/passwd")),
                          "'./lnk/passwd' is below './lnk', which is a symlink"),
    "through a symlink listed later": (lambda t: (_file(t, "./lnk/passwd"), _special(t, "./lnk", tarfile.SYMTYPE, "/etc")),
                                       "'./lnk/passwd' is below './lnk', which is a symlink"),
    "through a hard link": (lambda t: (_special(t, "./h", tarfile.LNKTYPE, "./ok"), _file(t, "./h/x")),
                            "'./h/x' is below './h', which is a hard link"),
    "below a file": (lambda t: _file(t, "./ok/x"), "'./ok/x' is below './ok', which is not a directory"),
    "hard link to a later member": (lambda t: (_special(t, "./hard", tarfile.LNKTYPE, "./later"), _file(t, "./later")),
                                    "is a hard link to './later', which is not an earlier regular file"),
    "hard link to a symlink": (lambda t: (_special(t, "./s", tarfile.SYMTYPE, "ok"), _special(t, "./hard", tarfile.LNKTYPE, "./s")),
                               "which is not an earlier regular file"),
    "hard link outside": (lambda t: _special(t, "./hard", tarfile.LNKTYPE, "../x"), "outside the archive"),
    "hard link to an absolute path": (lambda t: _special(t, "./hard", tarfile.LNKTYPE, "/etc/shadow"), "outside the archive"),
    "device": (lambda t: _special(t, "./dev", tarfile.CHRTYPE), "'./dev' is a character device"),
    "block device": (lambda t: _special(t, "./blk", tarfile.BLKTYPE), "'./blk' is a block device"),
    "fifo": (lambda t: _special(t, "./pipe", tarfile.FIFOTYPE), "'./pipe' is a FIFO"),
    "duplicate": (lambda t: _file(t, "ok"), "'./ok' appears twice"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_entries_are_refused_by_name(tmp_path, kind):
    add, reason = HOSTILE[kind]
    path = _archive(tmp_path / "bad.tgz", lambda t: (_file(t, "./ok"), add(t)))
    with pytest.raises(CaiError) as caught:
        _plan(path)
    assert reason in caught.value.message
    assert caught.value.extra == ("Nothing was written.",)


def test_symlink_targets_are_data(tmp_path):
    def add(t):
        _special(t, "./abs", tarfile.SYMTYPE, "/etc/shadow")
        _special(t, "./up", tarfile.SYMTYPE, "../../../outside")
        _special(t, "./dangling", tarfile.SYMTYPE, "nowhere")
    plan = _plan(_archive(tmp_path / "links.tgz", add))
    assert [(e.rel, e.kind, e.member.linkname) for e in plan.entries] == [
        ("abs", "symlink", "/etc/shadow"), ("up", "symlink", "../../../outside"), ("dangling", "symlink", "nowhere")]


def test_special_bits_are_counted_and_cleared(tmp_path):
    plan = _plan(_archive(tmp_path / "suid.tgz", lambda t: (_file(t, "./s", mode=0o4755, uid=0), _dir(t, "./d", mode=0o1777),
                                                           _file(t, "./plain", mode=0o640))))
    assert plan.cleared_bits == 2
    assert [oct(e.mode) for e in plan.entries] == ["0o755", "0o777", "0o640"]


def test_sparse_size_counts_toward_the_space_needed(tmp_path):
    plan = _plan(_archive(tmp_path / "big.tgz", lambda t: _file(t, "./a", b"x" * 10)))
    assert plan.space_needed() == 4096


def test_implied_parents_are_recorded(tmp_path):
    plan = _plan(_archive(tmp_path / "deep.tgz", lambda t: _file(t, "a/b/c")))
    assert plan.implied_dirs == {"a", "a/b"}


def test_reserved_work_directory_names_are_refused(tmp_path):
    path = _archive(tmp_path / "w.tgz", lambda t: _file(t, "./.cai-import-0123456789abcdef/x"))
    with pytest.raises(CaiError, match="reserves for its work directories"):
        volumes.dry_run(path, [])
    assert volumes.dry_run(_archive(tmp_path / "ok.tgz", lambda t: _file(t, "./.cai-import-staging/x")), []).entries


def test_truncated_gzip_is_refused(tmp_path):
    good = _archive(tmp_path / "good.tgz", lambda t: _file(t, "./big", b"y" * 200_000))
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CaiError, match="corrupt or truncated"):
        _plan(cut)


def test_a_directory_source_keeps_symlinks_and_hard_links(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    (src / "l").symlink_to("/etc/passwd")
    (src / "h").hardlink_to(src / "a")
    plan = _plan(src)
    assert sorted((e.rel, e.kind) for e in plan.entries) == [("a", "file"), ("h", "hardlink"), ("l", "symlink")]


def test_a_stale_pax_path_never_renames_a_member(tmp_path):
    """The bug behind lost unicode names: a member read from a PAX archive keeps its `path` record."""
    path = _archive(tmp_path / "u.tgz", lambda t: _file(t, "./with space/ünïcode.txt"))
    with tarfile.open(path) as tar:
        member = tar.getmembers()[0]
    assert member.pax_headers.get("path")
    renamed = "staged/with space/ünïcode.txt"

    def written_name(info):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as out:
            out.addfile(info, io.BytesIO(b"x"))
        buffer.seek(0)
        with tarfile.open(fileobj=buffer) as back:
            return back.getnames()

    assert written_name(archives.clean_info(member, renamed, kind="file")) == [renamed]
    member.name = renamed  # what the first port did
    assert written_name(member) == ["./with space/ünïcode.txt"]


def test_a_nul_in_a_pax_name_is_refused_by_name(tmp_path):
    path = tmp_path / "nul.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("ok")
        info.pax_headers = {"path": "ü\0b"}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(CaiError, match="has a NUL byte in its name"):
        _plan(path)


def test_a_directory_source_file_swapped_for_a_link_after_the_scan_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("hello world")
    (tmp_path / "secret").write_text("TOP-SECRET-")
    source = archives.Source(src)
    plan = archives.scan(source, [])
    (src / "notes.txt").unlink()
    (src / "notes.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(CaiError, match="changed while it was imported"):
        b"".join(archives.tar_stream(source, plan, "p"))
    (src / "notes.txt").unlink()
    (src / "notes.txt").write_text("other file")  # a new inode with the same name
    with pytest.raises(CaiError, match="changed while it was imported"):
        b"".join(archives.tar_stream(source, plan, "p"))
