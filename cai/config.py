"""Config files and workspace state.

Workspace state lives in the user config `${XDG_CONFIG_HOME:-~/.config}/containai/config.toml`
under `[workspace."<normalized path>"]`. It is read with tomllib and written atomically (temp
file + rename) under an flock, so that concurrent cai runs lose no entry. Nothing here does I/O at
import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

from cai import output
from cai.errors import CaiError, ExitCode
from cai.userfiles import atomic_write, file_lock, user_config_path

DEFAULT_DATA_VOLUME = "containai-data"
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
DEFAULT_PIDS_LIMIT = 4096  # processes and threads of one agent container; `[container].pids_limit`


# --- reading ---------------------------------------------------------------------------------


def load_toml(path: Path, *, strict: bool) -> dict[str, Any]:
    """A config file as a dict. A missing file is empty (an error when `strict`: it was named).
    A file that exists but cannot be read or parsed is always an error, naming the file and the
    line: reading it as empty would lose its settings at the next state save."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (FileNotFoundError, NotADirectoryError):  # a file where a parent directory should be: no config
        if strict:
            raise CaiError(ExitCode.ERROR, f"Config file not found: {output.shown(str(path))}")
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise CaiError(ExitCode.ERROR, f"Failed to parse config: {output.shown(str(path))}", f"[ERROR]   {exc}",
                       "[HINT] Fix the file; cai never rewrites a config it cannot read") from None
    except UnicodeDecodeError as exc:
        raise CaiError(ExitCode.ERROR, f"Failed to parse config: {output.shown(str(path))}",
                       f"[ERROR]   not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise CaiError(ExitCode.ERROR, f"Cannot read config: {output.shown(str(path))}",
                       f"[ERROR]   {exc.strerror or exc}") from None


def discover_config(workspace: Path | None) -> Path | None:
    """The repo-local `.containai/config.toml` above the workspace, else the user config.

    The walk stops after the directory that holds `.git` and never checks `/`.
    """
    if workspace is not None:
        current = Path(workspace)
        while current != current.parent:
            candidate = current / ".containai" / "config.toml"
            if candidate.is_file():
                return candidate
            if (current / ".git").exists():
                break
            current = current.parent
    user = user_config_path()
    return user if user.is_file() else None


def workspace_key(workspace: Path | str) -> str:
    return str(workspace)


def workspace_state(workspace: Path | str) -> dict[str, Any]:
    """The user config's `[workspace."<path>"]` table, or {} (read failures degrade to empty)."""
    return Layers(None).workspace_state(workspace)


def best_workspace_section(doc: dict[str, Any], workspace: Path | str) -> dict[str, Any]:
    """The `[workspace."P"]` table whose P is the longest prefix of the workspace path."""
    table = doc.get("workspace")
    if not isinstance(table, dict):
        return {}
    ws = str(workspace).rstrip("/") or "/"
    best, best_len = {}, -1
    for key, value in table.items():
        if not isinstance(value, dict):
            continue
        prefix = str(key).rstrip("/") or "/"
        if (ws == prefix or ws.startswith(prefix.rstrip("/") + "/")) and len(prefix) > best_len:
            best, best_len = value, len(prefix)
    return best


# --- validation ------------------------------------------------------------------------------


def validate_volume_name(name: str, *, source: str = "", hint: bool = True) -> str:
    """`hint`: the rule's line after the error, as the original's export and import print it (its
    volume resolution prints the first line alone)."""
    if not name or len(name) > 255 or not VOLUME_NAME_RE.match(name):
        where = f" (from {source})" if source else ""
        raise CaiError(
            ExitCode.ERROR,
            f"Invalid volume name: {output.shown(name)}{where}",
            *(["[ERROR] Volume names must start with alphanumeric and contain only [a-zA-Z0-9_.-]"] if hint else []),
        )
    return name


# --- resolution ------------------------------------------------------------------------------


class Layers:
    """The config files that speak for one workspace, in precedence order: the explicit (--config,
    strict) or the discovered repo config, then the user's. Each file is read once, when a setting
    first needs it: a broken file that no asked-for setting reaches stays quiet, as before."""

    __slots__ = ("workspace", "_sources", "_docs")

    def __init__(self, workspace: Path | None, explicit_config: Path | None = None) -> None:
        self.workspace = workspace
        self._sources = _config_sources(workspace, explicit_config) if workspace is not None else \
            ([(explicit_config, True)] if explicit_config is not None else []) + [(user_config_path(), False)]
        self._docs: dict[Path, dict[str, Any]] = {}

    def docs(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        for path, strict in self._sources:
            if path not in self._docs:
                self._docs[path] = load_toml(path, strict=strict)
            yield path, self._docs[path]

    def user(self) -> dict[str, Any]:
        path = user_config_path()
        if path not in self._docs:
            self._docs[path] = load_toml(path, strict=False)
        return self._docs[path]

    def workspace_state(self, workspace: Path | str | None = None) -> dict[str, Any]:
        """The user config's `[workspace."<path>"]` table, or {}."""
        table = self.user().get("workspace", {})
        entry = table.get(workspace_key(workspace or self.workspace or ""), {}) if isinstance(table, dict) else {}
        return entry if isinstance(entry, dict) else {}

    def engine_context(self) -> tuple[str, str] | None:
        """(context, where it was named), as written: CONTAINAI_SECURE_ENGINE_CONTEXT, else the
        first `[secure_engine].context_name` (key by key: a repo config without the key does not
        hide the user's). contexts.py judges the name."""
        env = os.environ.get("CONTAINAI_SECURE_ENGINE_CONTEXT")
        if env:
            return env, "CONTAINAI_SECURE_ENGINE_CONTEXT"
        for path, doc in self.docs():
            section = doc.get("secure_engine", {})
            name = section.get("context_name") if isinstance(section, dict) else None
            if isinstance(name, str) and name:
                return name, f"[secure_engine].context_name in {path}"
        return None

    def volume(self, cli_value: str | None) -> str:
        """Data volume precedence: flag, env, workspace state, repo/explicit config, user config, default."""
        if cli_value is not None:
            return validate_volume_name(cli_value, hint=False)
        env = os.environ.get("CONTAINAI_DATA_VOLUME")
        if env:
            return validate_volume_name(env, source="CONTAINAI_DATA_VOLUME")
        state = self.workspace_state().get("data_volume")
        if isinstance(state, str) and state:
            return validate_volume_name(state, source="workspace state")
        for path, doc in self.docs():
            section = best_workspace_section(doc, self.workspace or Path("/"))
            for candidate in (section.get("data_volume"), doc.get("data_volume")):
                if isinstance(candidate, str) and candidate:
                    return validate_volume_name(candidate, source=str(path))
        return DEFAULT_DATA_VOLUME

    def excludes(self) -> list[str]:
        """`default_excludes` plus the best-matching `[workspace."P"].excludes`, each from the first
        config that has one."""
        defaults: list[str] | None = None
        specific: list[str] | None = None
        for _, doc in self.docs():
            if defaults is None and "default_excludes" in doc:
                defaults = _string_list(doc["default_excludes"])
            section = best_workspace_section(doc, self.workspace or Path("/"))
            if specific is None and "excludes" in section:
                specific = _string_list(section["excludes"])
        return list(dict.fromkeys((defaults or []) + (specific or [])))

    def import_excludes_private(self) -> bool:
        """`[import].exclude_priv` (default true): leave `shell/bashrc.d/*.priv.*` out of imports."""
        for _, doc in self.docs():
            section = doc.get("import")
            if isinstance(section, dict) and isinstance(section.get("exclude_priv"), bool):
                return section["exclude_priv"]
        return True

    def pids_limit(self) -> int:
        """`[container].pids_limit` of the user's config, for containers created from now on. Only
        the user's: a repo config sits in the workspace, which the agent writes."""
        section = self.user().get("container")
        value = section.get("pids_limit", DEFAULT_PIDS_LIMIT) if isinstance(section, dict) else DEFAULT_PIDS_LIMIT
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CaiError(ExitCode.ERROR, f"Invalid [container].pids_limit in {output.shown(str(user_config_path()))}: "
                           f"{output.shown(repr(value))}", "[ERROR] It is a whole number of processes, at least 1 (default 4096)")
        return value


def _config_sources(workspace: Path, explicit_config: Path | None) -> list[tuple[Path, bool]]:
    """The explicit or discovered repo config (strict only when explicit), then the user config."""
    sources: list[tuple[Path, bool]] = []
    if explicit_config is not None:
        sources.append((explicit_config, True))
    else:
        found = discover_config(workspace)
        if found is not None:
            sources.append((found, False))
    user = user_config_path()
    if all(path != user for path, _ in sources):
        sources.append((user, False))
    return sources


def _string_list(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


# --- writing ---------------------------------------------------------------------------------


def update_user_config(mutate: Callable[[dict[str, Any]], None]) -> None:
    """Read, mutate and atomically rewrite the user config under its lock.

    Comments in the file are not kept: it is cai's own state file.
    """
    path = user_config_path()
    with file_lock(path.parent / ".config.lock"):
        doc = load_toml(path, strict=False) if path.exists() else {}
        mutate(doc)
        atomic_write(path, dump_toml(doc))


def save_workspace_state(workspace: Path | str, **values: Any) -> None:
    """Merge values into the workspace's state; an unchanged state is not rewritten."""
    wanted = {k: v for k, v in values.items() if v is not None}
    current = workspace_state(workspace)
    if all(current.get(k) == v for k, v in wanted.items()):
        return

    def mutate(doc: dict[str, Any]) -> None:
        table = doc.setdefault("workspace", {})
        entry = table.setdefault(workspace_key(workspace), {})
        entry.update(wanted)

    update_user_config(mutate)


# --- a small TOML writer (tomllib reads; the stdlib has no writer) ---------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_str(value: str) -> str:
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_str(key)


def _toml_value(value: Any) -> str:
    import datetime as _dt
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dump_toml(doc: dict[str, Any]) -> str:
    lines: list[str] = []

    def emit(table: dict[str, Any], path: list[str]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)]
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in table.items():
            sub = path + [_toml_key(key)]
            if isinstance(value, dict):
                if lines:
                    lines.append("")
                lines.append("[" + ".".join(sub) + "]")
                emit(value, sub)
            elif _is_table_array(value):
                for item in value:
                    if lines:
                        lines.append("")
                    lines.append("[[" + ".".join(sub) + "]]")
                    emit(item, sub)

    emit(doc, [])
    return "\n".join(lines) + ("\n" if lines else "")
