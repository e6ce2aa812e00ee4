"""Every Docker context cai knows, asked side by side (`status --all-contexts`, `gc --all-contexts`).

One thread per context, each with an `Engine` (so clients) of its own, and one budget for all of
them, counted from when they start: a context that has not answered when it runs out is reported
as unreachable and its thread is left behind. The threads are daemon threads, not a
ThreadPoolExecutor's: the interpreter joins a pool's workers at exit even after
`shutdown(wait=False)` (measured: a pool running a 6 s call kept cai alive 6 s), so a context that
never answers would hold cai open however early it stopped waiting.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from cai import output
from cai.errors import CaiError, ExitCode

if TYPE_CHECKING:
    from cai import engine

BUDGET_S = 5.0
T = TypeVar("T")


class Unreachable:
    """A context that gave no answer, why (one line), and the exit code its error carries."""

    __slots__ = ("context", "reason", "code")

    def __init__(self, context: str, reason: str, code: int = ExitCode.ERROR) -> None:
        self.context, self.reason, self.code = context, reason, int(code)

    def as_json(self) -> dict[str, str]:
        return {"context": self.context, "reason": self.reason}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unreachable) and (self.context, self.reason, self.code) == (other.context, other.reason, other.code)

    def __repr__(self) -> str:
        return f"Unreachable({self.context!r}, {self.reason!r}, {self.code})"


def known_contexts() -> list[str]:
    """`default` and every context in the docker CLI's store ($DOCKER_CONFIG/contexts/meta), sorted.
    A meta.json that cannot be read has no name to report under: a [WARN], and it is left out."""
    import json

    from cai import engine

    names = {engine.DEFAULT_CONTEXT}
    meta = engine.docker_config_dir() / "contexts" / "meta"
    try:
        entries = sorted(meta.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        path = entry / "meta.json"
        if not entry.is_dir():
            continue
        try:
            data = json.loads(_read_regular(path))
            name = data["Name"]
            if not isinstance(name, str) or not name:
                raise ValueError("no name")
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):
            output.warn(f"Unreadable Docker context metadata, skipped: {output.shown(str(path))}")
            continue
        names.add(name)
    return sorted(names)


def _read_regular(path: "os.PathLike[str] | str") -> str:
    """A small regular file's text; a FIFO or a device there must not block or flood."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        return os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)


def reason(exc: BaseException) -> str:
    """One line: the classified error's first line, plus its detail for the classes that show one."""
    from cai import engine

    if isinstance(exc, engine.EngineUnavailable):
        detail = f": {exc.detail}" if exc.detail and exc.kind in ("unknown", "context", "ssh") else ""
        return f"{exc.message}{detail}"
    if isinstance(exc, CaiError):
        return exc.message
    return f"Unexpected error: {type(exc).__name__}: {output.shown(str(exc))[:300]}"


def fan_out(work: Callable[["engine.Engine"], T], contexts: list[str] | None = None,
            budget: float = BUDGET_S) -> tuple[list[tuple[str, T]], list[Unreachable]]:
    """`work(Engine(name))` for every context at once. Returns the answers and the unreachable
    contexts, each in the order of `contexts` (default: `known_contexts()`)."""
    import concurrent.futures
    import threading

    from cai import engine

    names = known_contexts() if contexts is None else contexts
    early: dict[str, Unreachable] = {}
    endpoints: dict[str, str] = {}
    for name in names:  # in this thread: it reads local files (and imports docker once)
        if not engine.valid_context_name(name):
            early[name] = Unreachable(name, "cai does not accept this context name "
                                            "(alphanumeric first, then only [a-zA-Z0-9_-], at most 64 characters)")
            continue
        try:
            endpoint = engine.context_endpoint(name)
        except Exception:  # noqa: BLE001 - an unreadable context is that context's problem only
            endpoint = None
        if endpoint is None:
            early[name] = Unreachable(name, f"Docker context or connection issue: cannot read context {name}")
        else:
            endpoints[name] = endpoint

    futures: dict[str, concurrent.futures.Future[T]] = {}
    for name in endpoints:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def target(name: str = name, future: concurrent.futures.Future[T] = future) -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(work(engine.Engine(name)))
            except BaseException as exc:  # noqa: BLE001 - reported as this context's reason
                future.set_exception(exc)

        futures[name] = future
        threading.Thread(target=target, name=f"cai-context-{name}", daemon=True).start()
    concurrent.futures.wait(futures.values(), timeout=budget)

    answered: list[tuple[str, T]] = []
    unreachable: list[Unreachable] = []
    for name in names:
        if name in early:
            unreachable.append(early[name])
            continue
        future = futures[name]
        if not future.done():
            unreachable.append(Unreachable(name, f"no answer within {budget:g} s"))
        elif future.exception() is not None:
            exc = future.exception()
            code = exc.code if isinstance(exc, CaiError) else ExitCode.ERROR
            unreachable.append(Unreachable(name, reason(exc), code))
        else:
            answered.append((name, future.result()))
    return answered, unreachable


def engine_identity(daemon_info: dict[str, Any], container_ids: "list[str] | set[str]") -> str:
    """Who answered: the daemon's ID alone is not enough (dockerds on one host, and cloned VMs,
    share /etc/docker/key.json, hence the ID), so its name, data root and the containers it
    listed go with it. Two engines that agree on all of that show the same rows anyway."""
    import hashlib

    if not daemon_info.get("ID"):
        return ""
    parts = [str(daemon_info.get(key) or "") for key in ("ID", "Name", "DockerRootDir")] + sorted(container_ids)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def one_per_engine(answered: list[tuple[str, T]], engine_id: Callable[[T], str]) -> tuple[list[tuple[str, T]], list[dict[str, str]]]:
    """The answers with a context that names an engine already seen (Docker Desktop's `default`
    and `desktop-linux`, say) left out, and those as [{"context", "same_as"}]: listed twice, its
    containers would be counted twice, and gc would remove them (and their images) twice."""
    first: dict[str, str] = {}
    kept: list[tuple[str, T]] = []
    same: list[dict[str, str]] = []
    for context, answer in answered:
        key = engine_id(answer)
        if key and key in first:
            same.append({"context": context, "same_as": first[key]})
            continue
        if key:
            first[key] = context
        kept.append((context, answer))
    return kept, same


def warn_same_engine(same: list[dict[str, str]]) -> None:
    for item in same:
        output.warn(f"context {output.shown(item['context'])}: the same engine as context "
                    f"{output.shown(item['same_as'])}; shown once")


def warn_unreachable(unreachable: list[Unreachable]) -> None:
    for item in unreachable:
        output.warn(f"context {output.shown(item.context)}: {item.reason}")


def none_answered(unreachable: list[Unreachable]) -> CaiError:
    """The error when not one context answered; its code is the first context's."""
    code = unreachable[0].code if unreachable else ExitCode.ERROR
    return CaiError(code, f"No Docker context answered ({len(unreachable)} tried)")


def json_unreachable(unreachable: list[Unreachable]) -> list[dict[str, Any]]:
    return [item.as_json() for item in unreachable]
