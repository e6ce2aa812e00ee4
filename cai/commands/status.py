"""`cai status`: one container's state, uptime, sessions and resource use.

Name, status and image come from one inspect and are always shown. For a running container the
session probe and one non-streaming stats read run side by side within BEST_EFFORT_BUDGET_S; what
does not arrive in time is left out.

`--all-contexts` lists every cai container of every context instead: one list call per context,
side by side (cai/all_contexts.py), and no per-container probe, which would not fit the budget.
"""

from __future__ import annotations

import argparse
import os

from cai import output
from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, Mapping

    from cai import engine, sessions

DESCRIPTION = ("Show the workspace container's status, image, uptime, active sessions and memory/CPU use. "
               "Uptime, sessions and resources are best effort (5 s at most).")

BEST_EFFORT_BUDGET_S = 5.0
JSON_SCHEMA_VERSION = 2  # 2: numbers beside the text (uptime_seconds, bytes; percents are numbers)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--container", metavar="NAME", help="show this container")
    parser.add_argument("-w", "--workspace", metavar="PATH", help="show this workspace's container (default: current directory)")
    parser.add_argument("--json", action="store_true", help=f"print one JSON document (schema_version {JSON_SCHEMA_VERSION})")
    parser.add_argument("--all-contexts", action="store_true",
                        help="list the cai containers of every Docker context, side by side (5 s each); "
                        "unreachable contexts are reported, not fatal")


# --- pure parts ------------------------------------------------------------------------------


def format_resources(usage: int | None, limit: int | None, cpu_delta: int | None, system_delta: int | None,
                     cpus: int) -> dict[str, Any]:
    """`docker stats`'s figures as text (binary sizes) and as numbers (bytes, percents to two decimals)."""
    found: dict[str, Any] = {}
    if isinstance(usage, int):
        found["memory_usage"], found["memory_bytes"] = output.bytes_size(usage), usage
        if isinstance(limit, int) and limit > 0:
            found["memory_limit"], found["memory_limit_bytes"] = output.bytes_size(limit), limit
            found["memory_percent"] = round(usage / limit * 100, 2)
    if isinstance(cpu_delta, int) and isinstance(system_delta, int) and system_delta > 0 and cpu_delta >= 0:
        found["cpu_percent"] = round(cpu_delta / system_delta * cpus * 100, 2)
    return found


def resources_from_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """From the engine's stats API: memory without the inactive page cache, CPU over its interval."""
    memory = stats.get("memory_stats") or {}
    usage, limit = memory.get("usage"), memory.get("limit")
    if isinstance(usage, int):
        detail = memory.get("stats") or {}
        cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))
        if isinstance(cache, int) and cache < usage:
            usage -= cache
    cpu, precpu = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - precpu["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - precpu["system_cpu_usage"]
        cpus = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or ()) or 1
    except (KeyError, TypeError):
        cpu_delta = system_delta = None
        cpus = 1
    return format_resources(usage, limit, cpu_delta, system_delta, cpus)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


RESOURCE_KEYS = ("memory_usage", "memory_bytes", "memory_limit", "memory_limit_bytes", "memory_percent", "cpu_percent")


def build_report(container: "engine.Container", uptime: str | None, found: "sessions.Sessions | None",
                 resources: Mapping[str, Any] | None, uptime_seconds: int | None = None,
                 agent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from cai import containers

    report: dict[str, Any] = {
        "container": container.name,
        "status": container.status,
        "image": container.image or "unknown",
        "uptime": uptime,
        "uptime_seconds": uptime_seconds,
        "workspace": containers.workspace_report(container.labels, container.workspace_mount),
    }
    if found is not None:
        report["sessions"] = found.as_json()
    if resources:
        report["resources"] = {key: resources.get(key) for key in RESOURCE_KEYS}
    return {**_without_none(report), "agent": dict(agent) if agent is not None else None}


def workspace_line(workspace: Mapping[str, Any], remote: bool) -> str | None:
    from cai import containers

    mount = {"type": workspace.get("mount"), "source": workspace.get("source")}
    shown = containers.describe_workspace(mount, workspace.get("path"), remote=remote)
    return None if shown is None else f"  Workspace: {shown}"


def render_text(report: Mapping[str, Any], remote: bool = False) -> list[str]:
    lines = [f"Container: {report['container']}", f"  Status: {report['status']}"]
    if "uptime" in report:
        lines.append(f"  Uptime: {report['uptime']}")
    lines.append(f"  Image: {report['image']}")
    workspace = workspace_line(report.get("workspace") or {}, remote)
    if workspace:
        lines.append(workspace)
    found = report.get("sessions") or {}
    if "ssh_connections" in found or "active_terminals" in found:
        lines += ["", "  Sessions (best-effort):"]
        for key, title in (("ssh_connections", "SSH connections"), ("active_terminals", "Active terminals"),
                           ("exec_sessions", "Exec sessions")):
            if key in found:
                lines.append(f"    {title}: {found[key]}")
        if found.get("detached_sessions"):  # only then: scripts read the original's three lines
            lines.append(f"    Detached sessions: {' '.join(found['detached_sessions'])}")
    agent = report.get("agent")
    if agent:
        lines.append(f"  Agent: {agent['name']} ({agent['state']}, session {agent['session']})")
    res = report.get("resources") or {}
    if res:
        lines += ["", "  Resource Usage:"]
        if "memory_usage" in res and "memory_limit" in res:
            percent = f" ({res['memory_percent']:.0f}%)" if "memory_percent" in res else ""  # a whole one, as the seed
            lines.append(f"    Memory: {res['memory_usage']} / {res['memory_limit']}{percent}")
        if "cpu_percent" in res:
            lines.append(f"    CPU: {res['cpu_percent']:.2f}%")
    return lines


# --- --all-contexts: pure parts --------------------------------------------------------------

COLUMNS = (("CONTEXT", "context"), ("NAME", "name"), ("STATUS", "status"), ("IMAGE", "image"),
           ("SSH PORT", "ssh_port"), ("WORKSPACE", "workspace"))


def container_rows(context: str, listed: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per workspace container of a sparse list (helpers left out, as
    `labels.is_workspace_container` does), sorted by name."""
    from cai import engine, labels

    rows = []
    for item in listed:
        item_labels = item.get("Labels") or {}
        if not labels.is_workspace_container(item_labels):
            continue
        rows.append({
            "context": context,
            "name": (item.get("Names") or ["/?"])[0].lstrip("/"),
            "id": item.get("Id") or "",
            "status": item.get("State") or "unknown",
            "image": item.get("Image") or "unknown",
            "workspace": labels.label(item_labels, labels.WORKSPACE) or None,
            "workspace_mount": engine.workspace_mount(item.get("Mounts")).get("type"),
            "ssh_port": labels.ssh_port(item_labels),
        })
    return sorted(rows, key=lambda row: row["name"])


def all_contexts_document(answered: list[tuple[str, list[dict[str, Any]]]],
                          unreachable: list[Any], same_engine: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """`answered` is (context, rows) in context order; `unreachable` all_contexts.Unreachable."""
    return {
        "contexts": [context for context, _ in answered],
        "containers": [row for _, rows in answered for row in rows],
        "unreachable": [item.as_json() for item in unreachable],
        "same_engine": same_engine or [],
    }


def render_table(rows: list[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return ["No ContainAI containers found."]
    cells = [[output.shown(str(row[key])) if row.get(key) not in (None, "") else "-" for _, key in COLUMNS]
             for row in rows]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, (title, _) in enumerate(COLUMNS)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
            for line in [[title for title, _ in COLUMNS], *cells]]


# --- the command -----------------------------------------------------------------------------


def _container_name(args: argparse.Namespace) -> tuple[str, str]:
    """(container name, the workspace it was looked up for)."""
    from cai import config, labels

    if args.container is not None:
        if args.workspace is not None:
            raise CaiError(ExitCode.ERROR, "--container and --workspace are mutually exclusive")
        return labels.validate_container_name(args.container), os.getcwd()
    raw = args.workspace if args.workspace is not None else os.getcwd()
    workspace = labels.normalize_path(raw)
    saved = config.workspace_state(workspace).get("container_name")
    if not isinstance(saved, str) or not saved:
        raise CaiError(ExitCode.ERROR, f"No container found for workspace: {raw}",
                       "Use 'cai status --container <name>' to specify a container")
    return saved, workspace


def _agent(container: "engine.Container", found: "sessions.Sessions | None") -> dict[str, Any] | None:
    """The agent `cai run` started here: running when its session is among the running detached
    ones; else, when the probe answered, the one last started for this workspace, not running."""
    from cai import agents, config, labels

    user = config.Layers(None)  # the user config, read once for both questions
    names = agents.names_for_display(user)
    running = agents.running_agent(found.detached if found is not None else None, names)
    if running is not None:
        return {"name": running, "session": running, "state": "running"}
    last = user.workspace_state(labels.label(container.labels, labels.WORKSPACE)).get("agent")
    if isinstance(last, str) and last in names and (not container.running or (found is not None and found.detached is not None)):
        return {"name": last, "session": last, "state": "not running"}
    return None


def _best_effort(container: "engine.Container") -> tuple["sessions.Sessions | None", dict[str, str] | None]:
    """The session probe and the resources read, within one budget."""
    import concurrent.futures
    import time

    from cai import cgroups, engine, sessions

    # Resources before the probe (its CPU would count): a local engine's container's own cgroup,
    # sampled for 50 ms from here; else (a remote engine, or one in a VM) read by the probe's own
    # exec first. Only when neither works, the stats API, which answers at the daemon's next
    # one-second tick, with what is left of the budget.
    deadline = time.monotonic() + BEST_EFFORT_BUDGET_S
    eng = engine.Engine(container.context)
    local = None
    if container.pid and not engine.is_remote(eng):
        local = cgroups.sample(container.pid, container.id)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        found = _within(pool.submit(sessions.detect, eng, container, resources=local is None), deadline)
        usage = local if local is not None else cgroups.from_inside((found.resources if found else None) or "")
        if usage is not None:
            return found, format_resources(usage["memory_usage"], usage["memory_limit"], usage["cpu_delta"],
                                           usage["system_delta"], usage["online_cpus"])
        stats = pool.submit(lambda: resources_from_stats(
            engine.container_stats(eng, container.name, timeout=BEST_EFFORT_BUDGET_S)))
        return found, _within(stats, deadline)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _within(future: "concurrent.futures.Future[Any]", deadline: float) -> Any:
    """The future's result by the deadline; None when late or failed."""
    import time

    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except Exception:  # noqa: BLE001 - late (TimeoutError) or failed: best effort
        return None


def _context_rows(eng: "engine.Engine") -> tuple[str, list[dict[str, Any]]]:
    """(the daemon's ID, the rows)."""
    from cai import all_contexts, engine, labels

    listed = engine.list_containers(eng, [labels.MANAGED_FILTER])
    identity = all_contexts.engine_identity(eng.call("info"), [str(item.get("Id")) for item in listed])
    return identity, container_rows(eng.context, listed)


def _run_all_contexts(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import all_contexts

    for flag, given in (("--container", args.container is not None), ("--workspace", args.workspace is not None)):
        if given:
            raise CaiError(ExitCode.ERROR, f"{flag} and --all-contexts are mutually exclusive")
    if ctx.context is not None:
        raise CaiError(ExitCode.ERROR, "--all-contexts and --context are mutually exclusive")
    answered, unreachable = all_contexts.fan_out(_context_rows)
    kept, same = all_contexts.one_per_engine(answered, lambda answer: answer[0])
    all_contexts.warn_unreachable(unreachable)
    all_contexts.warn_same_engine(same)
    document = all_contexts_document([(context, rows) for context, (_, rows) in kept], unreachable, same)
    if args.json:
        output.emit_json(document)
    elif answered:
        for line in render_table(document["containers"]):
            output.out(line)
    if not answered:
        raise all_contexts.none_answered(unreachable)
    return ExitCode.OK


def json_promised(args: argparse.Namespace) -> int | None:
    if not args.json:
        return None
    return 1 if args.all_contexts else JSON_SCHEMA_VERSION


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from pathlib import Path

    from cai import resolution

    if args.all_contexts:
        return _run_all_contexts(args, ctx)
    name, workspace = _container_name(args)
    container = resolution.find_managed(name, explicit_context=ctx.context, workspace=Path(workspace))
    uptime = uptime_seconds = found = resources = None
    if container.running:
        from datetime import datetime, timezone

        from cai import clock

        now = datetime.now(timezone.utc)
        uptime = clock.format_uptime(container.started_at, now)
        uptime_seconds = clock.seconds_since(container.started_at, now)
        found, resources = _best_effort(container)
    report = build_report(container, uptime, found, resources, uptime_seconds, _agent(container, found))
    if args.json:
        output.emit_json(report, schema_version=JSON_SCHEMA_VERSION)
    else:
        from cai import engine

        for line in render_text(report, engine.is_remote(engine.Engine(container.context))):
            output.out(line)
    return ExitCode.OK
