"""Opening a path the user typed for `cai cp` without following a link the agent planted.

The agent writes the workspace, which on a local engine is a directory of this host: it can put
`deploy -> /etc/cron.d` or `notes.txt -> ~/.ssh/id_ed25519` where the user will name them. So
every component of such a path is opened relative to the previous one's descriptor, and a
symbolic link on the way is followed only when root owns it (`/var/run`, `/lib`: the system's
own, which no agent can make). Any other link is refused by name: the user names its target
instead. A relative path starts at the working directory, which the kernel already resolved.
Standard library only.
"""

from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

from cai import output
from cai.errors import CaiError, ExitCode

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _refused(shown: str, link_target: str) -> CaiError:
    return CaiError(ExitCode.ERROR, f"Refused: {output.shown(shown)} is a symbolic link (to {output.shown(link_target)})",
                    "cai cp follows no link on a local path that root does not own (the agent may have planted it "
                    "in the workspace); name the real path")


def _step(parent_fd: int, part: str, shown: str, *, directory: bool, hops: int = 40) -> int | None:
    """Open `part` below `parent_fd`: a directory (to read), or with `directory` False anything,
    as an O_PATH descriptor (no side effect on a device or a FIFO). None when it does not exist."""
    kind = _DIR if directory else os.O_PATH | os.O_CLOEXEC
    try:
        fd = os.open(part, kind | os.O_NOFOLLOW, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise CaiError(ExitCode.ERROR, f"Cannot open {output.shown(shown)}: {exc.strerror}") from None
        fd = None
    found = os.stat(part, dir_fd=parent_fd, follow_symlinks=False) if fd is None else os.fstat(fd)
    if not stat.S_ISLNK(found.st_mode):
        if fd is None:
            raise CaiError(ExitCode.ERROR, f"Not a directory: {output.shown(shown)}")
        return fd
    if fd is not None:
        os.close(fd)
    target = os.readlink(part, dir_fd=parent_fd)
    if found.st_uid != 0:
        raise _refused(shown, target)
    if hops == 0:
        raise CaiError(ExitCode.ERROR, f"Too many symbolic links on the way to {output.shown(shown)}")
    # The system's own link, followed by the same rule: its target may pass through the agent's.
    current = os.open("/", _DIR) if target.startswith("/") else os.dup(parent_fd)
    parts = [p for p in target.split("/") if p and p != "."] or ["."]
    for index, inner in enumerate(parts):
        last = index == len(parts) - 1
        try:
            following = os.open("..", _DIR, dir_fd=current) if inner == ".." else \
                _step(current, inner, shown, directory=directory or not last, hops=hops - 1)
        finally:
            os.close(current)
        if following is None:
            return None
        current = following
    return current


def open_directory(path: str) -> int | None:
    """A descriptor of the directory `path`, reached without an agent's link; None when some
    component is missing. A component that exists but is no directory is an error."""
    absolute = path.startswith("/")
    fd = os.open("/" if absolute else ".", _DIR)
    walked = "/" if absolute else ""
    for part in [p for p in path.split("/") if p and p != "."]:
        walked = os.path.join(walked, part) if walked else part
        try:
            inner = _step(fd, part, walked, directory=True)
        finally:
            os.close(fd)
        if inner is None:
            return None
        fd = inner
    return fd


def split(path: str) -> tuple[str, str]:
    """(parent, last component) as the user wrote them; `a/b/` is ("a", "b")."""
    trimmed = path.rstrip("/") or "/"
    parent, _, last = trimmed.rpartition("/")
    if not parent and trimmed.startswith("/"):
        parent = "/"
    return parent or ".", last


def kind_in(parent_fd: int, name: str, shown: str) -> str | None:
    """"dir", "file" or "other" for `name` below `parent_fd`, refusing a link root does not own;
    None when it does not exist."""
    fd = _step(parent_fd, name, shown, directory=False)
    if fd is None:
        return None
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def open_directory_in(parent_fd: int, name: str, shown: str) -> int:
    """The directory `name` below `parent_fd`, by the same rule."""
    fd = _step(parent_fd, name, shown, directory=True)
    if fd is None:
        raise CaiError(ExitCode.ERROR, f"No such directory: {output.shown(shown)}")
    return fd


def open_file_in(parent_fd: int, name: str, shown: str) -> "IO[bytes]":
    """The regular file `name` below `parent_fd`, by the same rule, open for reading."""
    path_fd = _step(parent_fd, name, shown, directory=False)
    if path_fd is None:
        raise CaiError(ExitCode.ERROR, f"No such file or directory: {output.shown(shown)}")
    try:  # the O_PATH descriptor's own inode, opened for reading (never a lookup by name again)
        fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise CaiError(ExitCode.ERROR, f"Cannot read {output.shown(shown)}: {exc.strerror}") from None
    finally:
        os.close(path_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CaiError(ExitCode.ERROR, f"Not a regular file: {output.shown(shown)}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
