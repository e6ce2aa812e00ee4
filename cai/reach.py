"""What `cai exec` needs to reach a container it has reached before: its name and SSH port, keyed
by what decided them. A repeat call then goes straight to ssh (and the shared connection) without
asking the engine; the engine is asked again only when that connection fails.

The entry also keeps the host keys pinned for the port at the time. When the port's pinned keys
change (the container was recreated, or the port went to another container), the entry is void.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cai import config, ssh


@dataclass(frozen=True)
class Known:
    name: str
    port: int


def key(explicit_context: str | None, container_arg: str | None, workspace: Path) -> str:
    """Everything that picks the container without the engine: the flags, the configured context
    and the workspace's saved container."""
    saved = config.workspace_state(str(workspace)).get("container_name")
    return json.dumps([explicit_context, config.configured_engine_context(workspace), container_arg,
                       str(workspace), saved if isinstance(saved, str) else None])


def _entry_path(cache_key: str) -> Path:
    return config.state_dir() / "reach" / (hashlib.sha256(cache_key.encode()).hexdigest()[:32] + ".json")


def lookup(cache_key: str) -> Known | None:
    try:
        data = json.loads(_entry_path(cache_key).read_text())
        known = Known(str(data["name"]), int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("key") != cache_key or list(ssh.pinned_lines(known.port)) != data.get("host_keys") or not data["host_keys"]:
        return None
    return known


def remember(cache_key: str, name: str, port: int) -> None:
    body = json.dumps({"key": cache_key, "name": name, "port": port, "host_keys": list(ssh.pinned_lines(port))})
    path = _entry_path(cache_key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.atomic_write(path, body + "\n", mode=0o600)
    except OSError:
        pass  # a cache that cannot be written only costs speed


def forget(cache_key: str) -> None:
    try:
        _entry_path(cache_key).unlink()
    except FileNotFoundError:
        pass
