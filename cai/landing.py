"""Landing a tar stream that the container chose (`cai cp NAME:SRC DEST`) without trusting it.

Whatever answers as the agent's `tar` decides every byte of the stream, and the same agent may be
able to write DEST's directory while cai works (a workspace it shares with this host's user). So
tarfile only parses here; its extraction filter is not the boundary (CVE-2025-4517 and its
siblings bypass it on Pythons that pyproject.toml admits, and Debian 12's 3.11.2 has no filter at
all). The rules are cai's own and never ask `realpath`:

- only the requested top and what is below it, every name made of plain components (no absolute
  path, no `.` or `..`, no empty component), each name once;
- regular files (not sparse ones), directories, symbolic links and hard links; nothing else;
- everything is written into a directory that cai makes itself, exclusively, beside DEST, and every
  open is relative to a directory descriptor with O_NOFOLLOW, so nothing is written through a link,
  whether the stream or a racing agent planted it;
- a hard link points only at a regular file that this stream wrote earlier;
- once the stream has ended, every symbolic link is resolved inside the staged tree, following
  the links there, and must stay below the top; a `..` after a component the copy does not hold
  as a directory is refused (a merge into DEST could make it lead anywhere);
- only then does the staged tree move onto DEST: a rename, or, into an existing directory, a merge
  of renames that is checked whole before it starts. A refused copy leaves DEST as it was (an
  agent that writes DEST itself can still make a merge stop part-way, which cai says).

Modes keep their permission bits less setuid, setgid, sticky and group/other write (the `data`
filter's rule); owners are never restored. Standard library only, so that it runs on every
admitted Python.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tarfile
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Callable, Iterator

from cai.errors import CaiError, ExitCode

STAGED = "c"  # the top's name inside the staging directory
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 18
# tarfile reads a pax or GNU long-name header whole, in one read of the size the stream claims:
# a larger claim is refused before it can take the host's memory.
HEADER_LIMIT = 1 << 20
_LINK_HOPS = 40  # Linux's own limit on links followed in one lookup
_RESOLVE_STEPS = 1_000_000  # components looked at, for all of one copy's links
MAX_DEPTH = 400


class Refused(Exception):
    """The stream holds something cai does not land; the message names the member."""


class _Blocked(Exception):
    """A path's directory is a link or a file: nothing is written through it."""


class NotATar(CaiError):
    """The stream broke off or was never a tar: often the sender's own failure, which it explains."""


def _clear_bits(mode: int) -> int:
    return mode & 0o777 & ~(stat.S_IWGRP | stat.S_IWOTH)


def _components(name: str, top: str) -> list[str]:
    """The member's path below the top, as components; the top itself is []."""
    trimmed = name[:-1] if name.endswith("/") and len(name) > 1 else name
    parts = trimmed.split("/")
    if parts[0] != top or any(part in ("", ".", "..") for part in parts):
        raise Refused(f"{name!r} is not below {top!r}")
    if len(parts) > MAX_DEPTH:  # removing or merging a deeper tree would outrun Python's recursion
        raise Refused(f"{name[:200]!r}… is more than {MAX_DEPTH} directories deep")
    return parts[1:]


class _ForwardReader:
    """The stream as tarfile's seekable mode sees it: forward only, and every read bounded.
    tarfile reads a pax or GNU long-name header whole, in one read of the size the stream
    claims; its stream mode would gather that read in memory below this wrapper, so cai uses the
    seekable mode and refuses such a read here before it can take the host's memory."""

    def __init__(self, raw: "IO[bytes]") -> None:
        self._raw = raw
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > HEADER_LIMIT:
            raise Refused(f"a header claims {size} bytes (more than {HEADER_LIMIT})")
        pieces, wanted = [], size
        while wanted > 0:
            piece = self._raw.read(wanted)
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
        data = b"".join(pieces)
        self._position += len(data)
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or position < self._position:
            raise Refused("the stream asks to be read backwards")
        while self._position < position and self.read(min(_CHUNK, position - self._position)):
            pass
        return self._position


class _Tree:
    """The staged tree: directory descriptors opened from the staging root, one component at a
    time, never through a link."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._chain: list[tuple[str, int]] = []  # the directories last opened below the root

    def directory(self, parts: list[str], *, make: bool) -> int:
        """The descriptor of the directory `parts` (relative to the root), made when missing."""
        keep = 0
        while keep < len(self._chain) and keep < len(parts) and self._chain[keep][0] == parts[keep]:
            keep += 1
        for _, fd in self._chain[keep:]:
            os.close(fd)
        del self._chain[keep:]
        for part in parts[keep:]:
            parent = self._chain[-1][1] if self._chain else self.root_fd
            if make:
                try:
                    os.mkdir(part, 0o700, dir_fd=parent)
                except FileExistsError:
                    pass
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _Blocked() from None
                raise
            self._chain.append((part, fd))
        return self._chain[-1][1] if self._chain else self.root_fd

    def close(self) -> None:
        for _, fd in self._chain:
            os.close(fd)
        self._chain.clear()


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int, leaf: str) -> None:
    fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
    with os.fdopen(fd, "wb") as out:  # a buffered writer: each write goes out whole
        source = tar.extractfile(member)
        left = member.size
        while source is not None and left > 0:
            chunk = source.read(min(_CHUNK, left))
            if not chunk:
                raise Refused(f"{member.name!r} ends before its {member.size} bytes")
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fchmod(fd, _clear_bits(member.mode))
        _set_mtime(fd, member.mtime)


def _set_mtime(fd: int, mtime: float) -> None:
    try:
        os.utime(fd, (mtime, mtime))
    except (OverflowError, ValueError, OSError):
        pass  # a time the file system cannot hold: the file keeps now



def stage(tar: tarfile.TarFile, top: str, root_fd: int) -> tuple[int, bool]:
    """Write the stream's members below `root_fd` (the top as STAGED); returns (entries, whether
    the top is a directory). Raises Refused at the first member that breaks a rule."""
    staged = _Staged(tar, top, root_fd)
    try:
        while (member := tar.next()) is not None:
            tar.members.clear()  # tarfile keeps every header it read; cai needs none of them again
            try:
                staged.add(member)
            except _Blocked:
                raise Refused(f"{member.name!r} goes through a link or a file") from None
            except OSError as exc:
                raise Refused(f"{member.name!r} could not be written ({exc.strerror})") from None
            except ValueError as exc:  # a NUL in a name or a link's target
                raise Refused(f"{member.name!r} cannot be a name here ({exc})") from None
        if staged.top_is_dir is None:
            raise Refused("the stream holds nothing")
        try:
            staged.finish()
        except (_Blocked, OSError) as exc:
            raise Refused(f"the staged copy changed while cai wrote it ({exc})") from None
    finally:
        staged.tree.close()
    return staged.count, staged.top_is_dir


class _Staged:
    def __init__(self, tar: tarfile.TarFile, top: str, root_fd: int) -> None:
        self.tar, self.top, self.root_fd = tar, top, root_fd
        self.tree = _Tree(root_fd)
        self.seen: set[tuple[str, ...]] = set()
        self.files: set[tuple[str, ...]] = set()
        self.directories: list[tuple[list[str], int, float]] = []
        self.links: list[tuple[list[str], str]] = []
        self.count = 0
        self.top_is_dir: bool | None = None

    def add(self, member: tarfile.TarInfo) -> None:
        parts = _components(member.name, self.top)
        if tuple(parts) in self.seen:
            raise Refused(f"{member.name!r} comes twice")
        self.seen.add(tuple(parts))
        path = [STAGED, *parts]
        if not parts:
            self.top_is_dir = member.isdir()
        elif self.top_is_dir is None:
            self.top_is_dir = True  # a stream that names no top of its own: the top is a directory
        elif not self.top_is_dir:
            raise Refused(f"{member.name!r} is below {self.top!r}, which is not a directory")
        parent_fd = self.tree.directory(path[:-1], make=True)
        leaf = path[-1]
        if member.isdir():
            try:
                os.mkdir(leaf, 0o700, dir_fd=parent_fd)
            except FileExistsError:  # made as a parent of an earlier member; the mode check below opens it
                pass
            self.directories.append((path, member.mode, member.mtime))
        elif member.isreg():
            if member.issparse():  # a few KiB that claim gigabytes of holes, written out as zeros
                raise Refused(f"{member.name!r} is a sparse file, which cai does not copy out")
            _write_file(self.tar, member, parent_fd, leaf)
            self.files.add(tuple(path))
        elif member.issym():
            if not member.linkname or member.linkname.startswith("/"):
                raise Refused(f"{member.name!r} is a link to {member.linkname!r}, which is not a relative path")
            os.symlink(member.linkname, leaf, dir_fd=parent_fd)
            self.links.append((path, member.linkname))
        elif member.islnk():
            try:
                target = [STAGED, *_components(member.linkname, self.top)]
            except Refused:
                target = []
            if tuple(target) not in self.files:
                raise Refused(f"{member.name!r} is a hard link to {member.linkname!r}, "
                              "which is not a file this copy wrote before it")
            source_fd = os.dup(self.tree.directory(target[:-1], make=False))
            try:
                parent_fd = self.tree.directory(path[:-1], make=False)
                os.link(target[-1], leaf, src_dir_fd=source_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
            finally:
                os.close(source_fd)
            self.files.add(tuple(path))
        else:
            raise Refused(f"{member.name!r} is a {_kind(member)}, and cai copies out files, directories and links only")
        self.count += 1

    def finish(self) -> None:
        """Links are judged once the tree is whole (a later member can change where one leads);
        directory modes last, deepest first, so that none keeps cai out of its own staging."""
        budget = _Budget()
        for path, target in self.links:
            _check_link(self.root_fd, path, target, budget)
        for path, mode, mtime in sorted(self.directories, key=lambda item: -len(item[0])):
            fd = self.tree.directory(path, make=False)
            os.fchmod(fd, _clear_bits(mode) | stat.S_IRWXU)  # always the user's to change and remove
            _set_mtime(fd, mtime)


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    return f"tar entry of type {member.type!r}"


class _Budget:
    """Steps left for judging this copy's links: a stream of chained links through a deep tree
    must not buy unbounded CPU."""

    def __init__(self, steps: int = _RESOLVE_STEPS) -> None:
        self.left = steps

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise Refused(f"its links take more than {_RESOLVE_STEPS} steps to judge")


def _check_link(root_fd: int, path: list[str], target: str, budget: _Budget) -> None:
    """The link at `path` must resolve, in the staged tree and following its links, below the top."""
    where = _resolve(root_fd, path[:-1], target, budget)
    if where is None or where[:1] != [STAGED]:
        shown = "/".join(path[1:]) or "(the top)"
        raise Refused(f"the link {shown!r} → {target!r} leads outside what was copied (or loops, or "
                      "climbs out of a directory the copy does not hold)")


def _resolve(root_fd: int, base: list[str], target: str, budget: _Budget) -> list[str] | None:
    """Where `target` leads from the directory `base`, as components below the staging root, or
    None when it leaves the top, loops, or climbs (`..`) out of a component the staged tree does
    not hold as a directory: there the answer would depend on what DEST already has (a merge),
    which cai does not judge. Each step goes through a descriptor of the real directory it is in:
    no path string is handed to the kernel whole, so no length limit can bend the answer."""
    stack: list[int] = []  # descriptors of `where`'s directories, while they are all real
    where: list[str] = []
    try:
        fd = os.dup(root_fd)
        stack.append(fd)
        for part in base:
            budget.spend()
            stack.append(os.open(part, _DIR_FLAGS, dir_fd=stack[-1]))
            where.append(part)
        parts = [part for part in reversed(target.split("/")) if part not in ("", ".")]  # next one last
        hops = _LINK_HOPS
        known = True  # every component of `where` is a real directory of the staged tree
        while parts:
            budget.spend()
            part = parts.pop()
            if part == "..":
                if len(where) <= 1 or not known:
                    return None
                where.pop()
                os.close(stack.pop())
                continue
            found = None
            if known:
                try:
                    found = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
                except OSError:
                    found = None
            if found is not None and stat.S_ISLNK(found.st_mode):
                if hops == 0:
                    return None
                hops -= 1
                inner = os.readlink(part, dir_fd=stack[-1])
                if inner.startswith("/"):
                    return None
                parts.extend(p for p in reversed(inner.split("/")) if p not in ("", "."))
                continue
            where.append(part)
            if known and found is not None and stat.S_ISDIR(found.st_mode):
                stack.append(os.open(part, _DIR_FLAGS, dir_fd=stack[-1]))
            else:
                known = False
        return where
    finally:
        for fd in stack:
            os.close(fd)


# --- onto DEST --------------------------------------------------------------------------------


def land(stream: "IO[bytes]", top: str, into_fd: int, into: str, name: str, *, sender: str,
         confirm: "Callable[[], None] | None" = None) -> int:
    """Parse `stream` (an uncompressed tar whose top member is `top`) and put the tree at `name`
    in the directory `into_fd` (which this closes; `into` names it in messages). Raises CaiError
    (rc 1) with the first offending member; DEST is then as it was. `sender` names the stream in
    messages ("what proj-main sent"). `confirm` runs once the stream has ended, before DEST
    changes, and raises if the sender failed: tarfile takes a stream cut at a member's boundary
    for its end, and a cut copy must not land."""
    staging = None
    try:
        staging, staging_fd = _make_staging(into_fd, into)
        try:
            try:
                with tarfile.TarFile(fileobj=_ForwardReader(stream), mode="r") as tar:
                    count, top_is_dir = stage(tar, top, staging_fd)
            except Refused as exc:
                raise CaiError(ExitCode.ERROR, f"Refused {sender}: {exc}", "Nothing was written.") from None
            except (tarfile.TarError, EOFError) as exc:
                raise NotATar(ExitCode.ERROR, f"Copy failed: {sender} is not a tar ({exc})", "Nothing was written.") from None
            if confirm is not None:
                confirm()
            try:
                _place(staging_fd, into_fd, name, top_is_dir)
            except OSError as exc:
                raise CaiError(ExitCode.ERROR, f"Could not put the copy at {os.path.join(into, name)}: {exc.strerror}",
                               "Nothing was written.") from None
        finally:
            os.close(staging_fd)
        return count
    finally:
        if staging is not None:
            _remove_staging(into_fd, staging)
        os.close(into_fd)


def _make_staging(into_fd: int, into: str) -> tuple[str, int]:
    for _ in range(100):
        staging = f".cai-cp-{secrets.token_hex(6)}"
        try:
            os.mkdir(staging, 0o700, dir_fd=into_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CaiError(ExitCode.ERROR, f"Cannot write into {into}: {exc.strerror}") from None
        try:
            return staging, os.open(staging, _DIR_FLAGS, dir_fd=into_fd)
        except OSError as exc:
            _remove_staging(into_fd, staging)
            raise CaiError(ExitCode.ERROR, f"The staging directory {staging} changed under cai ({exc.strerror})") from None
    raise CaiError(ExitCode.ERROR, f"Could not make a staging directory in {into}")


def _remove_staging(into_fd: int, staging: str) -> None:
    # rmtree works through descriptors and never follows a link (rmtree.avoids_symlink_attacks).
    try:
        shutil.rmtree(staging, dir_fd=into_fd)
    except FileNotFoundError:
        pass
    except (OSError, RecursionError):
        pass  # whatever is left is ours, in a hidden directory beside DEST; never a reason to fail


def _kind_at(dir_fd: int, name: str) -> str | None:
    try:
        found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return "dir" if stat.S_ISDIR(found.st_mode) else "other"


def _place(staging_fd: int, into_fd: int, name: str, top_is_dir: bool) -> None:
    there = _kind_at(into_fd, name)
    if there is None or (there == "other" and not top_is_dir):
        os.rename(STAGED, name, src_dir_fd=staging_fd, dst_dir_fd=into_fd)
        return
    if not top_is_dir:
        raise CaiError(ExitCode.ERROR, f"Cannot copy a file over the directory {name}", "Nothing was written.")
    if there != "dir":
        raise CaiError(ExitCode.ERROR, f"Cannot copy a directory over the file {name}", "Nothing was written.")
    source_fd = os.open(STAGED, _DIR_FLAGS, dir_fd=staging_fd)
    try:
        target_fd = os.open(name, _DIR_FLAGS, dir_fd=into_fd)
    except OSError as exc:
        os.close(source_fd)
        raise CaiError(ExitCode.ERROR, f"{name} changed under cai ({exc.strerror})", "Nothing was written.") from None
    try:
        conflict = _merge_conflict(source_fd, target_fd, name)
        if conflict:
            raise CaiError(ExitCode.ERROR, f"Cannot merge into {name}: {conflict}", "Nothing was written.")
        try:
            _merge(source_fd, target_fd)
        except OSError as exc:  # DEST changed after the check: an agent that writes it raced the merge
            raise CaiError(ExitCode.ERROR, f"The merge into {name} stopped part-way: {exc.strerror}",
                           "What was moved before stays; nothing was written through a link.") from None
    finally:
        os.close(source_fd)
        os.close(target_fd)


def _entries(dir_fd: int) -> "Iterator[tuple[str, bool]]":
    with os.scandir(dir_fd) as found:
        for entry in found:
            yield entry.name, entry.is_dir(follow_symlinks=False)


def _merge_conflict(source_fd: int, target_fd: int, shown: str) -> str | None:
    """What a merge would have to overwrite that cp would not: a directory with a non-directory
    or the reverse. Checked whole before anything moves."""
    for entry, is_dir in _entries(source_fd):
        there = _kind_at(target_fd, entry)
        if there is None:
            continue
        if is_dir != (there == "dir"):
            return f"{shown}/{entry} is a {'directory' if there == 'dir' else 'non-directory'} there"
        if is_dir:
            inner_source = os.open(entry, _DIR_FLAGS, dir_fd=source_fd)
            try:
                inner_target = os.open(entry, _DIR_FLAGS, dir_fd=target_fd)
            except OSError:
                os.close(inner_source)
                return f"{shown}/{entry} changed under cai"
            try:
                conflict = _merge_conflict(inner_source, inner_target, f"{shown}/{entry}")
            finally:
                os.close(inner_source)
                os.close(inner_target)
            if conflict:
                return conflict
    return None


def _merge(source_fd: int, target_fd: int) -> None:
    """Move every staged entry into the existing directory: new entries and non-directories by
    rename (which replaces a link, never follows it), directories entry by entry."""
    for entry, is_dir in list(_entries(source_fd)):
        there = _kind_at(target_fd, entry)
        if not is_dir or there is None:
            os.rename(entry, entry, src_dir_fd=source_fd, dst_dir_fd=target_fd)
            continue
        inner_source = os.open(entry, _DIR_FLAGS, dir_fd=source_fd)
        try:
            inner_target = os.open(entry, _DIR_FLAGS, dir_fd=target_fd)
            try:
                _merge(inner_source, inner_target)
            finally:
                os.close(inner_target)
        finally:
            os.close(inner_source)
