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


RC_TOO_LONG = 1000  # no exit status is this: run_bounded's child said more than its limit


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float | None,
    limit: int,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
) -> Result:
    """As run(), for a child whose output someone else controls: stdout and stderr are each read
    up to `limit` bytes. A child that says more is killed and gives RC_TOO_LONG, with what was
    read, so that a flood costs `limit` bytes of memory, never the host's."""
    import threading

    try:
        child = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(env))
    except FileNotFoundError:
        return Result(RC_NOT_FOUND, "", f"{argv[0]}: command not found")
    except PermissionError as exc:
        return Result(126, "", f"{argv[0]}: {exc.strerror}")
    flooded: list[bool] = []
    parts: tuple[list[bytes], list[bytes]] = ([], [])

    def read(pipe, into: list[bytes]) -> None:
        size = 0
        try:
            while chunk := os.read(pipe.fileno(), 1 << 16):
                into.append(chunk[:limit - size])
                size += len(chunk)
                if size > limit:
                    flooded.append(True)
                    child.kill()
                    return
        except OSError:
            pass
        finally:
            pipe.close()

    def write() -> None:
        try:
            child.stdin.write(input.encode())
            child.stdin.close()
        except OSError:  # the child stopped reading: what it says next decides
            pass

    threads = [threading.Thread(target=read, args=(child.stdout, parts[0]), daemon=True),
               threading.Thread(target=read, args=(child.stderr, parts[1]), daemon=True)]
    if input is not None:
        threads.append(threading.Thread(target=write, daemon=True))
    for thread in threads:
        thread.start()
    try:
        rc = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return Result(RC_TIMEOUT, "", f"{argv[0]}: timed out after {timeout:g}s")
    for thread in threads:  # a grandchild that keeps a pipe open is not waited for long
        thread.join(timeout=2)
    out, err = (b"".join(part).decode(errors="replace") for part in parts)
    if flooded:
        return Result(RC_TOO_LONG, out, err)
    return Result(rc if rc >= 0 else 128 - rc, out, err)
