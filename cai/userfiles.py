"""Where cai keeps its files on this machine, and how it writes them: atomically, under a lock.

Below config and ssh alike: both write files here, and neither may import the other.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

from cai.errors import CaiError, ExitCode

LOCK_TIMEOUT_S = 30.0


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    return Path(base) / "containai"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(_home() / ".local" / "state")
    return Path(base) / "containai"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(_home() / ".cache")
    return Path(base) / "containai"


def user_config_path() -> Path:
    return config_dir() / "config.toml"


def ssh_dir() -> Path:
    return _home() / ".ssh"


@contextlib.contextmanager
def file_lock(lock_path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive flock on `lock_path`, waited for up to `timeout` seconds."""
    import fcntl
    import time

    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CaiError(ExitCode.ERROR, f"Timeout acquiring lock: {lock_path}")
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
