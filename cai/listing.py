"""`cai ps`: rows of managed containers, their filters, sessions and renderings.

One list call per context, then a bounded fan-out: inspects of what the list lacks (start and
finish times), and for running containers the session probe, side by side, within one budget.
"""

from __future__ import annotations

import re
import threading
import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Sequence

from cai import engine, labels, output
from cai.errors import CaiError, ExitCode

SESSIONS_BUDGET_S = 5.0
WORKERS = 8
FILTER_KEYS = ("label", "status", "name", "workspace")
STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
# {{.Field}} of a row, for --format TEMPLATE; the JSON keys are the snake_case of the same.
TEMPLATE_FIELDS = {"Name": "name", "ID": "id", "Context": "context", "Workspace": "workspace", "Mount": "workspace_mount",
                   "State": "state", "Health": "health", "Status": "status", "Image": "image", "Port": "ssh_port",
                   "Uptime": "uptime", "Sessions": "sessions_summary", "Agent": "agent_shown"}
COLUMNS = (("NAME", "name"), ("STATE", "state_shown"), ("WORKSPACE", "workspace_shown"), ("IMAGE", "image"),
           ("SSH PORT", "ssh_port"), ("UP / AGE", "uptime"), ("SESSIONS", "sessions_summary"), ("AGENT", "agent_shown"))
_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def parse_filters(given: list[str]) -> dict[str, list[str]]:
    """`KEY=VALUE` words → engine filters (label, status, name) and cai's own (workspace → label)."""
    filters: dict[str, list[str]] = {}
    for word in given:
        key, sep, value = word.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise CaiError(ExitCode.ERROR, f"Invalid filter: {output.shown(word)}",
                           f"Use KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        if key == "status" and value not in STATES:
            raise CaiError(ExitCode.ERROR, f"Invalid status filter: {output.shown(value)}", f"States: {', '.join(STATES)}")
        if key == "label" and value.split("=", 1)[0] == labels.MANAGED:
            raise CaiError(ExitCode.ERROR, f"{labels.MANAGED} is always filtered on; filter on another label")
        if key == "workspace":
            key, value = "label", f"{labels.WORKSPACE}={labels.normalize_path(value)}"
        filters.setdefault(key, []).append(value)
    return filters


def health(status_text: str) -> str | None:
    found = _HEALTH_RE.search(status_text or "")
    return found.group(1).replace("health: ", "") if found else None


def base_row(context: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the list call says of one container; None for a helper or another tool's container."""
    item_labels = item.get("Labels") or {}
    if not labels.is_workspace_container(item_labels):
        return None
    return {
        "context": context,
        "name": (item.get("Names") or ["/?"])[0].lstrip("/"),
        "id": item.get("Id") or "",
        "state": item.get("State") or "unknown",
        "health": health(item.get("Status") or ""),
        "status": item.get("Status") or "",
        "image": item.get("Image") or "unknown",
        "workspace": labels.label(item_labels, labels.WORKSPACE) or None,
        "workspace_mount": engine.workspace_mount(item.get("Mounts")).get("type"),
        "ssh_port": labels.ssh_port(item_labels),
        "created": item.get("Created"),
    }


def add_times(row: dict[str, Any], record: engine.Container | None, now: float) -> None:
    """Uptime of a running container, age of any other (since it finished, else since created)."""
    from datetime import datetime, timezone

    from cai import clock

    row["started_at"] = row["uptime"] = row["uptime_seconds"] = row["age_seconds"] = None
    if record is None:
        return
    moment = datetime.fromtimestamp(now, timezone.utc)
    if record.running and not clock.is_zero_time(record.started_at):
        row["started_at"] = record.started_at
        row["uptime"] = clock.format_uptime(record.started_at, moment)
        row["uptime_seconds"] = clock.seconds_since(record.started_at, moment)
        return
    row["age_seconds"] = clock.seconds_since(record.finished_at if not clock.is_zero_time(record.finished_at)
                                             else record.created, moment)
    if row["age_seconds"] is not None:
        row["uptime"] = f"{clock.format_age(row['age_seconds'])} ago"


def sessions_of(eng: engine.Engine, records: list[engine.Container], budget: float = SESSIONS_BUDGET_S
                ) -> dict[str, Any]:
    """id → sessions.Sessions for the running ones, WORKERS at a time, all within `budget`;
    what is not done by then is left out (the caller shows it as unknown)."""
    import queue

    from cai import sessions

    todo: queue.SimpleQueue[engine.Container] = queue.SimpleQueue()
    for record in records:
        if record.running:
            todo.put(record)
    found: dict[str, Any] = {}
    lock = threading.Lock()

    def work() -> None:
        while True:
            try:
                record = todo.get_nowait()
            except queue.Empty:
                return
            answer = sessions.detect(eng, record)
            with lock:
                found[record.id] = answer

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(WORKERS, len(records)) or 1)]
    deadline = time.monotonic() + budget
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return dict(found)


def managed_in(contexts: Sequence[str]) -> list[tuple[engine.Engine, list[dict[str, Any]]]]:
    """Each context's sparse list of cai-labelled containers, in order. A context that does not
    answer is an [INFO] line and left out; when none answers, the first one's error is raised."""
    answered: list[tuple[engine.Engine, list[dict[str, Any]]]] = []
    failures: list[engine.EngineUnavailable] = []
    for context in contexts:
        eng = engine.Engine(context)
        try:
            answered.append((eng, engine.list_containers(eng, [labels.MANAGED_FILTER])))
        except engine.EngineUnavailable as exc:
            output.info(f"Context '{context}' is not reachable: {exc.message}")
            failures.append(exc)
    if failures and len(failures) == len(contexts):
        raise failures[0]
    return answered


def add_sessions(row: dict[str, Any], found: Any, wanted: bool, agent_names: Sequence[str] = ()) -> None:
    """The probe's answer, and the agent session among the running detached ones (`cai run`
    names it after its agent): null when none runs or nobody looked."""
    row["agent"], row["agent_shown"] = None, "-"
    if not wanted or row["state"] != "running":
        row["sessions"], row["sessions_summary"] = None, "-"
        return
    from cai import agents

    running = agents.running_agent(found.detached if found is not None else None, agent_names)
    if running is not None:
        row["agent"], row["agent_shown"] = {"name": running, "session": running, "state": "running"}, running
    if found is None:
        row["sessions"] = {"state": "unknown", "ssh_connections": None, "active_terminals": None, "exec_sessions": None,
                           "detached_sessions": None, "reason": f"no answer within {SESSIONS_BUDGET_S:g} s"}
    else:
        row["sessions"] = found.as_json()
    row["sessions_summary"] = row["sessions"]["state"].upper()


def context_rows(eng: engine.Engine, filters: Mapping[str, list[str]], *, with_sessions: bool,
                 now: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """The rows of one context, sorted by name."""
    more = {key: list(values) for key, values in filters.items() if key != "label"}
    listed = engine.list_containers(eng, [labels.MANAGED_FILTER, *filters.get("label", ())], **more)
    rows = [row for row in (base_row(eng.context, item) for item in listed) if row is not None]
    records = engine.inspect_many(eng, [row["id"] for row in rows])
    found = sessions_of(eng, [records[row["id"]] for row in rows if row["id"] in records]) if with_sessions else {}
    agent_names: list[str] = []
    if with_sessions:
        from cai import agents, config

        agent_names = agents.names_for_display(config.Layers(None))
    moment = now()
    for row in rows:
        add_times(row, records.get(row["id"]), moment)
        add_sessions(row, found.get(row["id"]), with_sessions, agent_names)
    return sorted(rows, key=lambda row: row["name"])


JSON_KEYS = ("context", "name", "id", "state", "health", "status", "image", "workspace", "workspace_mount", "ssh_port",
             "started_at", "uptime", "uptime_seconds", "age_seconds", "sessions", "agent")


def as_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in JSON_KEYS}


def template_view(row: Mapping[str, Any]) -> dict[str, Any]:
    view = {field: row.get(key) for field, key in TEMPLATE_FIELDS.items()}
    view["ID"] = (row.get("id") or "")[:12]
    return view


def table(rows: list[Mapping[str, Any]], *, with_context: bool) -> list[str]:
    columns = ((("CONTEXT", "context"),) if with_context else ()) + COLUMNS

    def cell(row: Mapping[str, Any], key: str) -> str:
        if key == "state_shown":
            value = row["state"] + (f" ({row['health']})" if row.get("health") else "")
        elif key == "workspace_shown":
            value = row.get("workspace") or ""
            if value and row.get("workspace_mount") == "volume":
                value += " (copy)"
        else:
            value = row.get(key)
        return output.shown(str(value)) if value not in (None, "") else "-"

    cells = [[cell(row, key) for _, key in columns] for row in rows]
    widths = [max([len(title), *(len(line[i]) for line in cells)]) for i, (title, _) in enumerate(columns)]  # no rows: the header
    return ["  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip()
            for line in [[title for title, _ in columns], *cells]]
