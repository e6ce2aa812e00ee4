"""Captured child processes: an argv list and a timeout, never a shell string."""

from __future__ import annotations

import os
import subprocess
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence

RC_TIMEOUT = 124
RC_NOT_FOUND = 127

# The docker CLI must follow `--context`, never the caller's ambient engine.
AMBIENT_DOCKER_VARS = ("DOCKER_HOST", "DOCKER_CONTEXT")


class Result:
    """A finished process. A plain class: this module is on every command's import path, and
    NamedTuple or dataclass would compile code at import."""

    __slots__ = ("rc", "out", "err")

    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err


def child_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ plus overrides, where None removes a variable."""
    env = dict(os.environ)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(
    argv: Sequence[str],
    *,
    timeout: float | None,
    env: Mapping[str, str | None] | None = None,
    input: str | bytes | None = None,
) -> Result:
    """Run to completion with output captured. A timeout kills the child and gives rc 124;
    a missing program gives rc 127, as a shell would."""
    text = not isinstance(input, bytes)
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=text,
            errors="replace" if text else None,
            timeout=timeout,
            env=child_env(env),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Result(RC_TIMEOUT, "", f"{argv[0]}: timed out after {timeout:g}s")
    except FileNotFoundError:
        return Result(RC_NOT_FOUND, "", f"{argv[0]}: command not found")
    except PermissionError as exc:
        return Result(126, "", f"{argv[0]}: {exc.strerror}")
    out = done.stdout if text else done.stdout.decode(errors="replace")
    err = done.stderr if text else done.stderr.decode(errors="replace")
    return Result(done.returncode if done.returncode >= 0 else 128 - done.returncode, out, err)
