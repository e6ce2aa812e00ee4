"""What an archive may put into a volume, checked on the host before anything is written.

Pure tar logic, no engine. The rules follow PEP 706's `data` filter (`tarfile.data_filter` runs on
every member as a second net), with one deliberate difference: a symlink's target is data, so
absolute and outside-pointing targets are kept verbatim. What is refused instead is any member
written *through* a link, or below a non-directory, because that is how an archive escapes.
Modes and owners are kept exactly, except setuid, setgid and sticky, which are cleared.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
import tempfile
import zlib
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Iterable, Iterator, Sequence

from cai import output
from cai.errors import CaiError, ExitCode

# PEP 706's filters and TarInfo.replace arrived in 3.11.4 (Debian 12 has 3.11.2), and 3.12 brought
# tarfile's own fixes since: before 3.12, CPython's backport of its own module (a conditional
# dependency). Every TarInfo that import and export handle comes from this one module (volumes.py
# uses it too), so the filter always gets a member of its own kind.
if sys.version_info >= (3, 12):
    import tarfile
else:
    from backports import tarfile

READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
BLOCK = 4096  # what a file or directory costs at least on the volume's filesystem
FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
WORK_PREFIX = ".cai-import-"


def is_work_dir(top_level_name: str) -> bool:
    """`.cai-import-` + 16 hex digits, at the volume's top level, is an import's work directory."""
    suffix = top_level_name[len(WORK_PREFIX):]
    return top_level_name.startswith(WORK_PREFIX) and len(suffix) == 16 and all(c in "0123456789abcdef" for c in suffix)


# --- names and patterns ----------------------------------------------------------------------


def normalize_patterns(excludes: Iterable[str]) -> list[str]:
    """As the original: one leading `./`, then one leading `/`, stripped; empty ones dropped."""
    patterns = []
    for pattern in excludes:
        pattern = pattern[2:] if pattern.startswith("./") else pattern
        pattern = pattern[1:] if pattern.startswith("/") else pattern
        if pattern:
            patterns.append(pattern)
    return patterns


def is_excluded(name: str, patterns: Sequence[str]) -> bool:
    """GNU tar's `--exclude` for member names: unanchored (any run of path components may match),
    `*` crosses `/`, and a match on a directory covers everything below it."""
    if not patterns:
        return False
    parts = [p for p in name.split("/") if p and p != "."]
    for start in range(len(parts)):
        for end in range(start + 1, len(parts) + 1):
            candidate = "/".join(parts[start:end])
            if any(fnmatch.fnmatchcase(candidate, pattern) for pattern in patterns):
                return True
    return False


def relative_name(name: str) -> str:
    """`./a/b`, `a//b/` and `a/./b` → `a/b`; `.` and `./` → ``. Leaves `..` for the caller to refuse."""
    return "/".join(p for p in name.split("/") if p and p != ".")


def _path_problem(name: str) -> str | None:
    if "\0" in name:
        return "has a NUL byte in its name"
    if name.startswith("/"):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component"
    return None


def shown_name(rel: str) -> str:
    return output.shown(f"./{rel}" if rel else ".")


# --- pass one: the plan ----------------------------------------------------------------------


def mode_of(member: tarfile.TarInfo) -> int:
    """The permission bits import restores: setuid, setgid and sticky cleared."""
    return stat.S_IMODE(member.mode) & ~SPECIAL_BITS


class Refused(CaiError):
    def __init__(self, source: Path, rel_or_name: str, reason: str) -> None:
        super().__init__(ExitCode.ERROR, f"Refusing to import {output.shown(str(source))}: entry '{rel_or_name}' {reason}",
                         "Nothing was written.")


class Entry:
    """One member to restore: its relative path, its kind, and the member it came from."""

    __slots__ = ("rel", "kind", "member", "target")

    def __init__(self, rel: str, kind: str, member: tarfile.TarInfo, target: str = "") -> None:
        self.rel, self.kind, self.member, self.target = rel, kind, member, target

    @property
    def mode(self) -> int:
        return 0o777 if self.kind == SYMLINK else mode_of(self.member)  # Linux ignores a link's own mode

    @property
    def size(self) -> int:
        return self.member.size if self.kind == FILE else 0


class Plan:
    """Everything pass one learned: the entries to restore, in archive order, and their totals."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.entries: list[Entry] = []
        self.root: tarfile.TarInfo | None = None
        self.cleared_bits = 0  # entries that had setuid, setgid or sticky
        self.implied_dirs: set[str] = set()  # parents the archive does not list; the engine makes them
        self.excluded_files: dict[str, tarfile.TarInfo] = {}  # a kept hard link may need their data

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def space_needed(self) -> int:
        """A generous estimate of what the tree takes on disk: whole blocks per file and directory."""
        blocks = sum(-(-e.size // BLOCK) + (e.kind == DIR) for e in self.entries) + len(self.implied_dirs)
        return blocks * BLOCK

    def top_level(self) -> set[str]:
        return {e.rel.split("/", 1)[0] for e in self.entries} | {d.split("/", 1)[0] for d in self.implied_dirs}


class Source:
    """An archive (any compression tarfile reads) or a directory, read as tar members.

    A directory may be the agent's to write (the workspace), while cai reads it: any directory in
    it may be swapped for a link to ~/.ssh between the scan and the stream, or during the scan. So
    the top is opened once and everything below is reached from that descriptor, one component at
    a time with O_NOFOLLOW (os.fwalk for the scan), and checked to be what the scan saw: a swap
    sends nothing of where the link points, and fails the whole copy instead."""

    def __init__(self, path: Path, top_fd: int | None = None) -> None:
        """`top_fd`: the directory, already opened by a caller that guarded the way to it (cai cp);
        this Source owns it from then on. `path` then only names it in messages."""
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._top: int | None = top_fd
        self._files: dict[int, tuple[str, tuple[int, int, int, int]]] = {}  # id(member) → (rel, identity)
        self._dirs: dict[str, tuple[int, int]] = {}  # rel → (st_dev, st_ino) the scan saw
        self._open_dir: tuple[str, int] | None = None  # the last directory a file was read from
        if top_fd is not None:
            return
        if path.is_dir():
            # The top is the path the user named, a link to it included; only below it is guarded.
            try:
                self._top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise CaiError(ExitCode.ERROR, f"Cannot read {output.shown(str(path))}: {exc.strerror}") from None
            return
        if not path.is_file():
            raise CaiError(ExitCode.ERROR, f"Import source not found: {output.shown(str(path))}")
        try:
            self._tar = tarfile.open(path, "r:*")
        except READ_ERRORS as exc:
            raise corrupt(path, exc) from exc

    @property
    def is_directory(self) -> bool:
        return self._tar is None

    def members(self) -> Iterator[tarfile.TarInfo]:
        if self._tar is not None:
            yield from self._tar
            # Read to the end: a gzip trailer's CRC is checked only there.
            while self._tar.fileobj.read(1 << 20):
                pass
            return
        yield from self._scan_directory()

    def _scan_directory(self) -> Iterator[tarfile.TarInfo]:
        def unreadable(exc: OSError) -> None:
            raise CaiError(ExitCode.ERROR, f"Cannot read {output.shown(str(exc.filename or '.'))} in {output.shown(str(self.path))}: "
                           f"{exc.strerror}; nothing was swapped in")

        inodes: dict[tuple[int, int], str] = {}  # hard links: the first name of each inode
        listed: set[str] = set()
        walked: set[str] = set()
        # fwalk opens each directory relative to its parent's descriptor and descends only when it
        # is the directory it saw (not a link, not swapped meanwhile).
        for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", onerror=unreadable, follow_symlinks=False,
                                                             dir_fd=self._top):
            here = relative_name(dirpath)
            walked.add(here)
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                rel = f"{here}/{name}" if here else name
                try:
                    found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    target = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(found.st_mode) else ""
                except OSError as exc:
                    raise self._changed(rel, exc.strerror) from None
                info = _member(rel, found, target, inodes)
                if info.isdir():
                    self._dirs[rel] = (found.st_dev, found.st_ino)
                    listed.add(rel)
                elif info.isreg():
                    self._files[id(info)] = (rel, (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))
                yield info
        if listed - walked:  # a directory became something else between its listing and its walk
            raise self._changed(sorted(listed - walked)[0])

    def _changed(self, rel: str, why: str | None = None) -> CaiError:
        reason = f" ({why})" if why else ""
        return CaiError(ExitCode.ERROR, f"{output.shown(str(self.path / rel))} changed while it was imported{reason}; "
                        "nothing was swapped in")

    def _directory_fd(self, rel_dir: str) -> int:
        """The scanned directory `rel_dir`, reached from the top one component at a time, never
        through a link, and the same directory the scan saw; cached for the files that follow."""
        if self._open_dir is not None:
            if self._open_dir[0] == rel_dir:
                return self._open_dir[1]
            os.close(self._open_dir[1])
            self._open_dir = None
        fd = os.dup(self._top)
        walked = ""
        try:
            for part in rel_dir.split("/") if rel_dir else ():
                walked = f"{walked}/{part}" if walked else part
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                                    dir_fd=fd)
                except OSError as exc:
                    raise self._changed(walked, exc.strerror) from None
                os.close(fd)
                fd = child
                found = os.fstat(fd)
                if (found.st_dev, found.st_ino) != self._dirs.get(walked):
                    raise self._changed(walked)
        except BaseException:
            os.close(fd)
            raise
        self._open_dir = (rel_dir, fd)
        return fd

    def open(self, member: tarfile.TarInfo) -> IO[bytes]:
        if self._tar is not None:
            handle = self._tar.extractfile(member)
            if handle is None:
                raise tarfile.ReadError(f"no data for {member.name}")
            return handle
        rel, identity = self._files[id(member)]
        parent, _, name = rel.rpartition("/")
        # A file swapped for a link or a FIFO after the scan is refused, never followed.
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self._directory_fd(parent))
        except OSError as exc:
            raise self._changed(rel, exc.strerror) from None
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode) or (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns) != identity:
            os.close(fd)
            raise self._changed(rel)
        return os.fdopen(fd, "rb")

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        if self._open_dir is not None:
            os.close(self._open_dir[1])
            self._open_dir = None
        if self._top is not None:
            os.close(self._top)
            self._top = None


_TYPES = ((stat.S_ISREG, tarfile.REGTYPE), (stat.S_ISDIR, tarfile.DIRTYPE), (stat.S_ISLNK, tarfile.SYMTYPE),
          (stat.S_ISFIFO, tarfile.FIFOTYPE), (stat.S_ISCHR, tarfile.CHRTYPE), (stat.S_ISBLK, tarfile.BLKTYPE))


def _member(rel: str, found: os.stat_result, target: str, inodes: dict[tuple[int, int], str]) -> tarfile.TarInfo:
    """A local entry as tarfile's gettarinfo would describe it, from a stat already taken (a socket
    gets a type tarfile has no name for, which the checks refuse)."""
    info = tarfile.TarInfo(rel)
    info.type = next((kind for test, kind in _TYPES if test(found.st_mode)), b"?")
    if info.type == tarfile.REGTYPE and found.st_nlink > 1:
        first = inodes.setdefault((found.st_dev, found.st_ino), rel)
        if first != rel:
            info.type, info.linkname = tarfile.LNKTYPE, first
    info.mode = stat.S_IMODE(found.st_mode)
    info.uid, info.gid = found.st_uid, found.st_gid
    info.uname, info.gname = _owner_name(uid=found.st_uid), _owner_name(gid=found.st_gid)
    info.size = found.st_size if info.type == tarfile.REGTYPE else 0
    info.mtime = found.st_mtime
    if info.type == tarfile.SYMTYPE:
        info.linkname = target
    if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(found.st_rdev), os.minor(found.st_rdev)
    return info


def _owner_name(uid: int | None = None, gid: int | None = None, _cache: dict[tuple, str] = {}) -> str:  # noqa: B006
    """The user's (uid) or the group's (gid) name, "" when it has none; a per-process cache."""
    key = ("user", uid) if uid is not None else ("group", gid)
    if key not in _cache:
        import grp
        import pwd

        try:
            _cache[key] = pwd.getpwuid(uid).pw_name if uid is not None else grp.getgrgid(gid).gr_name
        except KeyError:
            _cache[key] = ""
    return _cache[key]


def corrupt(source: Path, exc: BaseException) -> CaiError:
    return CaiError(ExitCode.ERROR, f"Archive is corrupt or truncated: {output.shown(str(source))}", f"  {exc}",
                    "Nothing was written.")


def kind_of(member: tarfile.TarInfo) -> str | None:
    if member.isreg():  # regular, contiguous and GNU sparse members
        return FILE
    if member.isdir():
        return DIR
    if member.issym():
        return SYMLINK
    if member.islnk():
        return HARDLINK
    return None


def _type_problem(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "is a character device"
    if member.isblk():
        return "is a block device"
    if member.isfifo():
        return "is a FIFO"
    return "has an unsupported type"


def _pep706(member: tarfile.TarInfo, rel: str, target: str, scratch: str) -> str | None:
    """tarfile's own `data` filter on the member as it will be written, its symlink target left
    out (that is data here). `scratch` is an empty directory, so no host link is ever followed."""
    probe = member.replace(name=rel, linkname="" if member.issym() else target, deep=False)
    try:
        tarfile.data_filter(probe, scratch)
    except tarfile.FilterError as exc:
        return f"is refused by tarfile's data filter ({exc})"
    return None


def scan(source: Source, patterns: Sequence[str], *, read_data: bool = True) -> Plan:
    """Pass one: every member checked, and every byte of an archive read, before anything is written."""
    plan = Plan(source.path)
    kinds: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cai-check-") as scratch:
        try:
            for member in source.members():
                entry = _check(source, member, kinds, patterns, scratch)
                if entry is not None and is_excluded(entry.rel, patterns):
                    if entry.kind == FILE:
                        plan.excluded_files[entry.rel] = member
                    entry = None
                if entry is None:
                    continue
                if read_data and not source.is_directory and entry.kind == FILE and member.sparse is None:
                    with source.open(member) as handle:
                        while handle.read(1 << 20):
                            pass
                if entry.rel == "":
                    plan.root = member
                    continue
                if stat.S_IMODE(member.mode) & SPECIAL_BITS:
                    plan.cleared_bits += 1
                plan.entries.append(entry)
        except READ_ERRORS as exc:
            raise corrupt(source.path, exc) from exc
    for entry in plan.entries:
        _check_ancestors(source.path, entry.rel, kinds, plan.implied_dirs)
    return plan


def _check(source: Source, member: tarfile.TarInfo, kinds: dict[str, str], patterns: Sequence[str],
           scratch: str) -> Entry | None:
    """The checked entry for a member, or Refused."""
    problem = _path_problem(member.name) or ("has a NUL byte in its link target" if "\0" in member.linkname else None)
    if problem:
        raise Refused(source.path, output.shown(member.name), problem)
    rel = relative_name(member.name)
    kind = kind_of(member)
    if kind is None:
        raise Refused(source.path, shown_name(rel), _type_problem(member))
    if rel in kinds:
        raise Refused(source.path, shown_name(rel), "appears twice in the archive")
    if rel == "":
        if kind != DIR:
            raise Refused(source.path, ".", "is the archive's root, which must be a directory")
        kinds[rel] = kind
        return Entry(rel, kind, member)
    target = ""
    if kind == HARDLINK:
        problem = _path_problem(member.linkname)
        target = relative_name(member.linkname)
        if problem or not target:
            raise Refused(source.path, shown_name(rel), f"is a hard link to '{output.shown(member.linkname)}', outside the archive")
        if kinds.get(target) != FILE:
            raise Refused(source.path, shown_name(rel),
                          f"is a hard link to '{shown_name(target)}', which is not an earlier regular file")
    problem = _pep706(member, rel, target, scratch)
    if problem:
        raise Refused(source.path, shown_name(rel), problem)
    kinds[rel] = kind
    return Entry(rel, kind, member, target)


def _check_ancestors(source: Path, rel: str, kinds: dict[str, str], implied: set[str]) -> None:
    """Every parent the archive lists must be a directory, whatever the order of members."""
    parts = rel.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        kind = kinds.get(parent)
        if kind is None:
            implied.add(parent)
        elif kind in (SYMLINK, HARDLINK):
            raise Refused(source, shown_name(rel), f"is below '{shown_name(parent)}', which is a {'symlink' if kind == SYMLINK else 'hard link'}")
        elif kind != DIR:
            raise Refused(source, shown_name(rel), f"is below '{shown_name(parent)}', which is not a directory")


# --- pass two: the tar the engine extracts ---------------------------------------------------


def clean_info(member: tarfile.TarInfo, name: str, *, kind: str, linkname: str = "", mode: int | None = None) -> tarfile.TarInfo:
    """A fresh header: no inherited PAX records (a stale `path` record would override the new name,
    and xattrs such as file capabilities are not carried), sparse files as plain ones."""
    info = tarfile.TarInfo(name)
    info.type = {FILE: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE, HARDLINK: tarfile.LNKTYPE}[kind]
    info.mode = stat.S_IMODE(member.mode) if mode is None else mode
    info.uid, info.gid, info.uname, info.gname = member.uid, member.gid, member.uname, member.gname
    info.mtime = member.mtime
    info.size = member.size if kind == FILE else 0
    info.linkname = linkname
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_stream(source: Source, plan: Plan, prefix: str, progress: "Progress | None" = None, *,
               owner: tuple[int, int] | None = None) -> Iterator[bytes]:
    """The plan's entries as an uncompressed tar, names under `prefix/`, produced as it is sent.
    A failure to read the source is a CaiError of its own, never taken for an engine failure.

    A hard link whose target an exclude dropped becomes a copy of it (later links point at the copy).
    """
    try:
        yield from _tar_stream(source, plan, prefix, progress, owner)
    except READ_ERRORS as exc:
        raise CaiError(ExitCode.ERROR, f"Failed to read {output.shown(str(source.path))} while importing it", f"  {exc}",
                       "Nothing was swapped in.") from exc


def _tar_stream(source: Source, plan: Plan, prefix: str, progress: "Progress | None",
                owner: tuple[int, int] | None) -> Iterator[bytes]:
    written: dict[str, str] = {}  # excluded target → the entry that now holds its data
    by_rel = {e.rel: e for e in plan.entries if e.kind == FILE}
    for entry in plan.entries:
        name = f"{prefix}/{entry.rel}"
        data_member = entry.member
        if entry.kind == HARDLINK and entry.target in plan.excluded_files:
            data_member = plan.excluded_files[entry.target]
            if entry.target in written:
                info = clean_info(data_member, name, kind=HARDLINK, linkname=f"{prefix}/{written[entry.target]}")
            else:
                info = clean_info(data_member, name, kind=FILE, mode=mode_of(data_member))
                written[entry.target] = entry.rel
        elif entry.kind == HARDLINK:
            info = clean_info(entry.member, name, kind=HARDLINK, linkname=f"{prefix}/{entry.target}", mode=by_rel[entry.target].mode)
        else:
            info = clean_info(entry.member, name, kind=entry.kind, linkname=entry.member.linkname, mode=entry.mode)
        if owner is not None:
            info.uid, info.gid = owner
            info.uname = info.gname = ""
        yield _header(info)
        if info.type == tarfile.REGTYPE:
            yield from _data(source, data_member, info.size, progress)
        if progress is not None:
            progress.entry()
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _data(source: Source, member: tarfile.TarInfo, size: int, progress: "Progress | None") -> Iterator[bytes]:
    left = size
    with source.open(member) as handle:
        while left:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                raise CaiError(ExitCode.ERROR, f"{output.shown(member.name)} became shorter while it was read")
            left -= len(chunk)
            if progress is not None:
                progress.add(len(chunk))
            yield chunk
    remainder = size % tarfile.BLOCKSIZE
    if remainder:
        yield b"\0" * (tarfile.BLOCKSIZE - remainder)


# --- pass three: what the volume holds -------------------------------------------------------


def expected_manifest(plan: Plan) -> dict[str, tuple]:
    """rel → (kind, size, link target, mode, uid, gid) of what the volume must hold; hard links as files
    of one group (the engine may name any member of an inode group first)."""
    manifest: dict[str, tuple] = {}
    files = {e.rel: e.member for e in plan.entries if e.kind == FILE} | plan.excluded_files
    for entry in plan.entries:
        member = entry.member
        if entry.kind == HARDLINK:
            target = files[entry.target]
            manifest[entry.rel] = (FILE, target.size, "", mode_of(target), target.uid, target.gid)
        else:
            manifest[entry.rel] = (entry.kind, entry.size, member.linkname if entry.kind == SYMLINK else "",
                                   entry.mode, member.uid, member.gid)
    return manifest


def actual_manifest(members: Iterable[tarfile.TarInfo]) -> tuple[dict[str, tuple], tarfile.TarInfo | None, dict[str, str]]:
    """The same shape, read from the engine's tar of the volume; also its root and the hard-link map."""
    manifest: dict[str, tuple] = {}
    links: dict[str, str] = {}
    root = None
    for member in members:
        rel = relative_name(member.name)
        if not rel:
            root = member
            continue
        kind = kind_of(member) or "other"
        if kind == HARDLINK:
            target = relative_name(member.linkname)
            links[rel] = target
            first = manifest.get(target, (FILE, 0, "", 0, member.uid, member.gid))
            manifest[rel] = first
        else:
            manifest[rel] = (kind, member.size if kind == FILE else 0, member.linkname if kind == SYMLINK else "",
                             stat.S_IMODE(member.mode), member.uid, member.gid)
    return manifest, root, links


def wanted_links(plan: Plan) -> dict[str, str]:
    """Hard link → the entry it shares an inode with, as tar_stream writes them."""
    links, copies = {}, {}
    for entry in plan.entries:
        if entry.kind != HARDLINK:
            continue
        if entry.target in plan.excluded_files:
            if entry.target in copies:
                links[entry.rel] = copies[entry.target]
            else:
                copies[entry.target] = entry.rel
        else:
            links[entry.rel] = entry.target
    return links


def link_groups(pairs: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for rel, target in pairs.items():
        group = groups.setdefault(target, {target})
        group.add(rel)
    return {frozenset(g) for g in groups.values()}


def first_difference(plan: Plan, actual: dict[str, tuple], actual_links: dict[str, str]) -> str | None:
    """None when the volume holds exactly the plan's tree, else a sentence about the first difference."""
    expected = expected_manifest(plan)
    names = ("type", "size", "link target", "mode", "owner", "group")
    for rel, want in expected.items():
        have = actual.get(rel)
        if have is None:
            return f"'{shown_name(rel)}' is missing from the volume"
        for label, a, b in zip(names, want, have):
            if a != b:
                shown_a, shown_b = (f"{a:o}", f"{b:o}") if label == "mode" else (output.shown(str(a)), output.shown(str(b)))
                return f"'{shown_name(rel)}' has {label} {shown_b}, the archive says {shown_a}"
    for rel, have in actual.items():
        if rel not in expected and not (rel in plan.implied_dirs and have[0] == DIR):
            return f"'{shown_name(rel)}' is in the volume but not in the archive"
    if link_groups(wanted_links(plan)) != link_groups(actual_links):
        return "hard links differ from the archive's"
    return None


# --- progress --------------------------------------------------------------------------------


class Progress:
    """Bytes and entries done (out of the totals when known), redrawn on stderr at most 10 times a
    second; only when stdout and stderr are terminals."""

    def __init__(self, verb: str, total_bytes: int | None = None, total_entries: int | None = None) -> None:
        import sys

        self.verb, self.total_bytes, self.total_entries = verb, total_bytes, total_entries
        self.done_bytes = self.done_entries = 0
        self.enabled = output.isatty() and sys.stderr.isatty()
        self._drawn = 0.0

    def add(self, count: int) -> None:
        self.done_bytes += count
        self._maybe_draw()

    def entry(self) -> None:
        self.done_entries += 1
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        import time

        if self.enabled and time.monotonic() - self._drawn > 0.1:
            self._drawn = time.monotonic()
            self._draw()

    def _draw(self) -> None:
        import sys

        done = output.bytes_size(self.done_bytes)
        size = f"{done} / {output.bytes_size(self.total_bytes)}" if self.total_bytes is not None else done
        count = f"{self.done_entries}" + (f" / {self.total_entries}" if self.total_entries is not None else "")
        if self.total_bytes:
            filled = int(30 * min(self.done_bytes, self.total_bytes) / self.total_bytes)
            size = f"[{'#' * filled}{'.' * (30 - filled)}] {size}"
        sys.stderr.write(f"\r{self.verb}: {size}, {count} entries\033[K")
        sys.stderr.flush()

    def finish(self) -> None:
        import sys

        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
