"""The session check before stop, stop --all, kill and restart, with cai's own records behind it.

sessions.detect asks a root exec in the container, and that can fail or time out: an agent that
fills its pids or memory makes it fail at will. Then the sessions that cai's own records show as
running still count (agent_sessions.running_by_records reads them through the engine's archive
API, which needs no process in the container), so a session is never ended for want of an
answer. Only when neither can be read does the answer stay UNKNOWN, which goes on as before.
"""

from __future__ import annotations

import dataclasses
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cai import engine

from cai import sessions


def detect(eng: engine.Engine, container: engine.Container) -> sessions.Sessions:
    found = sessions.detect(eng, container)
    if found.state is not sessions.State.UNKNOWN or not container.running:
        return found
    from cai import agent_sessions

    recorded = agent_sessions.running_by_records(eng, container)
    if not recorded:
        return found
    return dataclasses.replace(found, state=sessions.State.HAS, detached=tuple(recorded),
                               reason=f"the probe failed ({found.reason}); cai's session records show these running")


def verdict(eng: engine.Engine, container: engine.Container, *, force: bool, interactive: bool,
            verb: str = "stop", gerund: str = "stopping", command: str = "stop") -> int | None:
    """sessions.verdict, with detect() above: None to go on; otherwise the exit code to end
    with. With sessions, a terminal is asked and anything else is refused (rc 1) unless `force`;
    an UNKNOWN answer goes on, as the original does."""
    from cai import output
    from cai.errors import CaiError, ExitCode

    if force or not container.running:
        return None
    found = detect(eng, container)
    if found.state is sessions.State.UNKNOWN:
        if output.is_verbose():
            output.warn(f"Could not check sessions in '{container.name}' ({found.reason}); {gerund} anyway")
        return None
    if found.state is sessions.State.NONE:
        return None
    message = f"Container '{container.name}' has active sessions ({summary(found)})"
    if not interactive:
        raise CaiError(ExitCode.ERROR, message,
                       f"Use --force to {verb} it anyway: cai {command} --container {container.name} --force")
    from cai import prompts

    output.warn(message)
    answer = prompts.confirm(f"{verb.capitalize()} anyway?")
    if answer:
        return None
    output.plain_err("Cancelled.")
    return ExitCode.OK if answer is None else ExitCode.ERROR


def summary(found: sessions.Sessions) -> str:
    if found.ssh_connections is None and found.active_terminals is None and found.detached:
        return f"the session probe failed; by cai's records, detached sessions: {' '.join(found.detached)}"
    return found.summary()
