"""What `cai exec` needs to reach a container it has reached before: its name and SSH port, keyed
by what decided them. A repeat call then goes straight to ssh (and the shared connection) without
asking the engine; the engine is asked again only when that connection fails.

The entry also keeps the host keys pinned for the endpoint at the time. When they change (the
container's keys were pinned again) or go (it was removed), the entry is void; a recreated
container is a new endpoint anyway (see ssh.Endpoint).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from cai import config, ssh, userfiles


Known = ssh.Endpoint


def _file_version(path: Path | None) -> list[object] | None:
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return [str(path), info.st_mtime_ns, info.st_size] if info is not None else None


def key(explicit_context: str | None, container_arg: str | None, workspace: Path) -> str:
    """Everything that picks the container without the engine: the flags, the environment's
    context, and the config files that hold the configured context and the workspace's saved
    container, by version (reading them would cost the TOML parser on every call; a write to
    them only costs one slow call)."""
    import os

    return json.dumps([explicit_context, os.environ.get("CONTAINAI_SECURE_ENGINE_CONTEXT"), container_arg,
                       str(workspace), _file_version(userfiles.user_config_path()),
                       _file_version(config.discover_config(workspace))])


def _entry_path(cache_key: str) -> Path:
    # The name only spreads entries out; an entry is used only when its stored key matches.
    data = cache_key.encode()
    return userfiles.state_dir() / "reach" / f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}.json"


def lookup(cache_key: str) -> Known | None:
    try:
        data = json.loads(_entry_path(cache_key).read_text())
        bridge = data.get("bridge")
        if bridge is not None and not (isinstance(bridge, list) and all(isinstance(word, str) for word in bridge)):
            return None
        known = ssh.Endpoint(str(data["name"]), int(data["port"]), str(data["alias"]), data.get("jump"), bridge)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("key") != cache_key or list(ssh.pinned_lines(known.alias)) != data.get("host_keys") or not data["host_keys"]:
        return None
    return known


# Agents run commands in parallel, often right after `cai run`: with no entry yet, each call would
# ask the engine itself (docker-py's import and a few requests each, on the same cores). The first
# one finds the container, under a lock beside the entry, and remembers it before its command
# runs; the others wait for that (bounded: a start or a readiness wait may come first), then look
# again. A finder that failed leaves no entry, and the others then go their own way at once, as
# if they had come alone: a missing container is not looked for a hundred times in a row.
FIND_WAIT_S = 60.0  # 500 calls at once on 2 cores waited up to 14 s


def find_or_wait(cache_key: str) -> tuple[Known | None, int | None]:
    """(what a concurrent finder remembered, None) after waiting for it; or (None, the lock's
    descriptor) when this call is to ask the engine and `remember`, then `release`; or (None, None)
    when it is to ask alone (no lock to be had, the wait ran out, or the finder found nothing)."""
    import fcntl
    import os
    import time

    path = _entry_path(cache_key).with_suffix(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass
    else:
        known = lookup(cache_key)  # a finder may have just let go
        if known is None:
            return None, fd
        os.close(fd)
        return known, None
    deadline = time.monotonic() + FIND_WAIT_S
    delay = ssh.POLL_FIRST_S
    try:
        while True:
            try:
                # Shared, and let go at once: only a finder holds it exclusively.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return None, None
                time.sleep(delay)
                delay = min(delay * 1.5, ssh.POLL_MAX_S)
    finally:
        os.close(fd)
    return lookup(cache_key), None


def release(lock: int | None) -> None:
    if lock is not None:
        import os

        os.close(lock)


def remember(cache_key: str, endpoint: ssh.Endpoint) -> None:
    body = json.dumps({"key": cache_key, "name": endpoint.name, "port": endpoint.port, "alias": endpoint.alias,
                       "jump": endpoint.jump, "bridge": endpoint.bridge,
                       "host_keys": list(ssh.pinned_lines(endpoint.alias))})
    path = _entry_path(cache_key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        userfiles.atomic_write(path, body + "\n", mode=0o600)
    except OSError:
        pass  # a cache that cannot be written only costs speed


def forget(cache_key: str) -> None:
    for path in (_entry_path(cache_key), _entry_path(cache_key).with_suffix(".lock")):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def forget_alias(alias: str) -> None:
    """Every entry that reaches the endpoint `alias` (a renamed or removed container)."""
    directory = userfiles.state_dir() / "reach"
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            if json.loads(path.read_text()).get("alias") == alias:
                path.unlink()
                path.with_suffix(".lock").unlink(missing_ok=True)
        except (OSError, ValueError, AttributeError):
            continue
