"""Everything cai prints goes through here: data to stdout, messages to stderr.

`[INFO]` and `[OK]` appear only when verbose (`--verbose` or CONTAINAI_VERBOSE=1); `--quiet` wins
over both. `[WARN]` and `[ERROR]` always appear.
"""

from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

JSON_SCHEMA_VERSION = 1
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

_verbose = False
_quiet = False


def configure(*, verbose: bool, quiet: bool) -> None:
    global _verbose, _quiet
    _quiet = quiet
    _verbose = not quiet and (verbose or os.environ.get("CONTAINAI_VERBOSE") == "1")


def is_verbose() -> bool:
    return _verbose


def isatty() -> bool:
    """Prompts, PTYs and progress bars need both ends to be a terminal."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def shown(text: str) -> str:
    """User input echoed in a message, with control characters made visible."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def info(message: str) -> None:
    if _verbose:
        _err(f"[INFO] {message}")


def ok(message: str) -> None:
    if _verbose:
        _err(f"[OK] {message}")


def warn(message: str) -> None:
    _err(f"[WARN] {message}")


def error(message: str) -> None:
    _err(f"[ERROR] {message}")


def plain_err(line: str = "") -> None:
    """A continuation line on stderr (hints, troubleshooting lists)."""
    _err(line)


def terminal_width(default: int = 80) -> int:
    for stream in (sys.stderr, sys.stdout):
        try:
            return os.get_terminal_size(stream.fileno()).columns or default
        except (AttributeError, ValueError, OSError):
            continue
    return default


def status_line(text: str) -> None:
    """The one updating line of a long step on a terminal (stderr): it replaces what it showed.
    The caller keeps `text` shorter than the terminal, so it never wraps onto a second line."""
    sys.stderr.write(f"\r\x1b[2K{text}")
    sys.stderr.flush()


def status_line_done() -> None:
    status_line("")


def out(line: str = "") -> None:
    print(line, flush=True)


_json_emitted = False


def emit_json(document: dict[str, Any], schema_version: int = JSON_SCHEMA_VERSION) -> None:
    """One JSON document on stdout, schema_version first."""
    import json

    global _json_emitted
    text = json.dumps({"schema_version": schema_version, **document}, indent=2)
    _json_emitted = True  # before the write: a Ctrl-C in the middle of it must not add a second document
    print(text, flush=True)


def json_emitted() -> bool:
    return _json_emitted


def emit_json_error(schema_version: int, kind: str, message: str, exit_code: int, details: list[str]) -> None:
    """The document a command that promised JSON prints when it fails before its own (docs/json.md)."""
    emit_json({"error": {"kind": kind, "message": message, "exit_code": exit_code, "details": details}}, schema_version)


def bytes_size(size: float) -> str:
    """Docker's binary size format (go-units BytesSize): 4 significant digits."""
    unit = 0
    while size >= 1024 and unit < len(_BINARY_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.4g}{_BINARY_UNITS[unit]}"
