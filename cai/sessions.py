"""Who is inside a container: SSH connections, terminals and `docker exec` sessions.

One root `docker exec` (5 s budget, container_scripts.PROBE_SCRIPT) prints raw data, and Python
does the counting, so the probe needs nothing in the image beyond `sh`: `ss` output when `ss` exists, /proc/net/tcp{,6} always,
and the names in /dev/pts. The engine's running exec sessions (ExecIDs) come from inspect, minus
the probe's own exec.

On a tcp:// engine an SSH connection is an `sshd -i` exec (engine.sshd_bridge_argv), counted as
an SSH connection and not as an exec session.

A container HAS sessions when any SSH connection, exec session or detached agent session (`cai
session`, counted by its wrapper's processes) is running, or when more than PTY_THRESHOLD
terminals are open. One terminal alone is not enough, as in the original: a login
over SSH or `docker exec -t` is already counted by its connection or its exec, and a lone pty is
usually something left behind in the background (a detached `script` or tmux server).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from cai import container_scripts as scripts
from cai import engine, labels, ssh

PROBE_TIMEOUT_S = engine.QUICK_TIMEOUT_S  # the client every other call uses: one connection
PTY_THRESHOLD = 1
SSHD_PORT = 22

class State(enum.Enum):
    HAS = "has"
    NONE = "none"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Sessions:
    state: State
    ssh_connections: int | None = None
    active_terminals: int | None = None
    exec_sessions: int | None = None
    reason: str = ""  # why the state is unknown
    detached: tuple[str, ...] | None = None  # running `cai session` names
    resources: str | None = None  # with detect(resources=True): what the cgroup read printed

    def as_json(self) -> dict[str, object]:
        """As every JSON document shows it (cai status, ps, inspect)."""
        return {"state": self.state.value, "ssh_connections": self.ssh_connections,
                "active_terminals": self.active_terminals, "exec_sessions": self.exec_sessions,
                "detached_sessions": None if self.detached is None else list(self.detached),
                "reason": self.reason or None}

    def summary(self) -> str:
        def shown(value: int | None) -> str:
            return "?" if value is None else str(value)

        text = f"ssh: {shown(self.ssh_connections)}, terminals: {shown(self.active_terminals)}, exec: {shown(self.exec_sessions)}"
        return text + (f", detached sessions: {' '.join(self.detached)}" if self.detached else "")


def _sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line in ("@ss", "@proc", "@pts", "@sessions", "@end"):
            current = sections.setdefault(line[1:], [])
        elif current is not None:
            current.append(line)
    return sections


def _count_ss(lines: list[str]) -> int | None:
    """Rows of `ss -tan state established` whose local port is sshd's; None when ss did not run."""
    if not lines or lines[0] == "@missing" or "@failed" in lines:
        return None
    count = 0
    for row in lines[1:]:  # the first line is ss's header
        fields = row.split()
        if len(fields) >= 4 and fields[2].rsplit(":", 1)[-1] == str(SSHD_PORT):
            count += 1
    return count


def _count_proc(lines: list[str]) -> int | None:
    """Established (st 01) rows of /proc/net/tcp{,6} on local port 22; None when neither file was read."""
    if not any(row.split()[:1] == ["sl"] for row in lines):
        return None
    count = 0
    for row in lines:
        fields = row.split()
        if len(fields) >= 4 and fields[0] != "sl" and ":" in fields[1]:
            if fields[3] == "01" and fields[1].rsplit(":", 1)[1].upper() == f"{SSHD_PORT:04X}":
                count += 1
    return count


def parse_probe(output: str) -> tuple[int | None, int | None, tuple[str, ...] | None]:
    """(ssh connections, numbered ptys, detached session names) from the probe's output; None
    where it says nothing."""
    from cai import agent_sessions

    sections = _sections(output)
    if "end" not in sections:
        return None, None, None
    ssh = _count_ss(sections.get("ss", []))
    if ssh is None:
        ssh = _count_proc(sections.get("proc", []))
    ptys = sum(1 for name in sections.get("pts", []) if name[:1].isdigit())
    detached = tuple(agent_sessions.probe_names(sections["sessions"])) if "sessions" in sections else None
    return ssh, ptys, detached


def classify(ssh: int | None, ptys: int | None, execs: int | None, detached: int = 0) -> State:
    if detached:
        return State.HAS
    if ssh is None or ptys is None or execs is None:
        known_busy = (ssh or 0) > 0 or (execs or 0) > 0 or (ptys or 0) > PTY_THRESHOLD
        return State.HAS if known_busy else State.UNKNOWN
    if ssh > 0 or execs > 0 or ptys > PTY_THRESHOLD:
        return State.HAS
    return State.NONE


def detect(eng: engine.Engine, container: engine.Container, *, resources: bool = False) -> Sessions:
    """Best effort, never raises: an engine or probe failure is UNKNOWN with a reason. With
    `resources`, the same exec first reads the container's cgroup (container_scripts.
    probe_with_resources), for status on an engine whose cgroups this host cannot see."""
    if not container.running:
        return Sessions(State.UNKNOWN, reason=f"container is {container.status or 'not running'}")
    port = labels.ssh_port(container.labels)
    released = 0
    if port is not None:  # our own idle shared connection is nobody inside
        released = ssh.release_master(ssh.Endpoint(container.name, port, ssh.host_key_alias(container.context, container.id)),
                                      every_on_port=True)
    try:
        argv = scripts.probe_with_resources() if resources else scripts.session_probe()
        probe_id, rc, output = engine.exec_captured(eng, container.name, argv, timeout=PROBE_TIMEOUT_S)
        if resources and rc != 0:  # no bash in the image: the probe alone
            probe_id, rc, output = engine.exec_captured(eng, container.name, scripts.session_probe(), timeout=PROBE_TIMEOUT_S)
    except engine.EngineUnavailable as exc:
        return Sessions(State.UNKNOWN, reason=exc.message)
    except engine.OutputTooLarge as exc:  # what agents' processes look like is theirs to choose
        return Sessions(State.UNKNOWN, reason=f"probe: {exc.message}")
    if rc != 0:
        return Sessions(State.UNKNOWN, reason=f"probe failed ({rc}): {output.strip()[:200]}")
    connections, ptys, detached = parse_probe(output)
    try:
        execs, bridged = _exec_sessions(eng, container.name, probe_id, settle=released > 0)
    except Exception as exc:  # noqa: BLE001 - a missing count makes the answer UNKNOWN, not an error
        execs = None
        reason = f"exec sessions unreadable: {getattr(exc, 'message', exc)}"
    else:
        reason = "" if connections is not None else "neither ss nor /proc/net/tcp could be read"
        if bridged:  # each one a login, whatever the TCP count says
            connections = (connections or 0) + bridged
    state = classify(connections, ptys, execs, len(detached or ()))
    lines = output.splitlines()
    read = lines[1] if resources and len(lines) > 1 and lines[0] == "@resources" and not lines[1].startswith("@") else None
    return Sessions(state, connections, ptys, execs, reason if state is State.UNKNOWN else "", detached, read)


_BRIDGE_SETTLE_S = 1.0


def _exec_sessions(eng: engine.Engine, name: str, probe_id: str, *, settle: bool) -> tuple[int, int]:
    """(exec sessions, ssh connections carried by an exec): on a tcp:// engine each ssh connection
    is an `sshd -i` exec (engine.sshd_bridge_argv), not a TCP connection. A master just released
    takes a moment to end its bridge, so then a bridge still running is read again, briefly."""
    deadline = time.monotonic() + (_BRIDGE_SETTLE_S if settle else 0)
    while True:
        running = [argv for exec_id, argv in engine.running_execs(eng, name) if exec_id != probe_id]
        bridged = sum(1 for argv in running if tuple(argv) == engine.SSHD_INETD)
        if not bridged or time.monotonic() >= deadline:
            return len(running) - bridged, bridged
        time.sleep(0.1)
