from __future__ import annotations

import io
import tarfile
from datetime import datetime

import pytest

from cai import volumes
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
    assert volumes.is_excluded(name, patterns) is excluded


def test_patterns_lose_one_leading_dot_slash_then_one_slash():
    assert volumes.normalize_patterns(["./shell", "/secret.txt", "", "//x", "././y"]) == ["shell", "secret.txt", "/x", "./y"]


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


HOSTILE = {
    "traversal": (lambda t: _file(t, "./../escape"), "path with '..'"),
    "absolute": (lambda t: _file(t, "/etc/passwd"), "absolute path"),
    "symlink": (lambda t: _special(t, "./link", tarfile.SYMTYPE, "/etc/shadow"), "symlink"),
    "hardlink": (lambda t: _special(t, "./hard", tarfile.LNKTYPE, "./a"), "hard link"),
    "device": (lambda t: _special(t, "./dev", tarfile.CHRTYPE), "device"),
    "fifo": (lambda t: _special(t, "./pipe", tarfile.FIFOTYPE), "FIFO"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_entries_are_refused_by_name(tmp_path, kind):
    add, reason = HOSTILE[kind]
    path = _archive(tmp_path / "bad.tgz", lambda t: (_file(t, "./ok"), add(t)))
    with pytest.raises(CaiError) as caught:
        volumes.check_source(path)
    assert reason in caught.value.message


def test_truncated_gzip_is_refused(tmp_path):
    good = _archive(tmp_path / "good.tgz", lambda t: _file(t, "./big", b"y" * 200_000))
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CaiError, match="corrupt or truncated"):
        volumes.check_source(cut)


def test_directory_with_a_symlink_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a")
    (tmp_path / "src" / "l").symlink_to("/etc/passwd")
    with pytest.raises(CaiError, match="'l' is a symlink"):
        volumes.check_source(tmp_path / "src")
