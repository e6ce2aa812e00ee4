"""`cai run` without a command: the agent, in a detached session named after it, so that a closed
laptop lid does not end it. On a terminal, cai attaches to it (Ctrl-b d detaches); without one,
it prints the session's name. A second `cai run` attaches to the running session rather than
starting another."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cai.agents import Agent

from cai import agent_sessions, output
from cai.errors import CaiError, ExitCode

NOT_IN_IMAGE = 127  # as a shell's "command not found"


def launch(eng: Any, container: Any, agent: Agent, *, attach: bool) -> int:
    session = agent.name
    if not _running(eng, container, session):
        _start(eng, container, agent)
    if not attach:
        output.out(session)
        output.info(f"Agent {agent.name} runs in session {session}: cai attach {session} (Ctrl-b d detaches)")
        return ExitCode.OK
    rc = agent_sessions.stream(eng, container, "attach", session, "0", tty="-t")
    if rc == agent_sessions.RC_NOT_RUNNING:  # it ended between the start and the attach
        output.plain_err(f"[INFO] Agent session {session} has ended; its output: cai session logs {session}")
        return ExitCode.OK
    return rc


def _running(eng: Any, container: Any, session: str) -> bool:
    found = next((s for s in agent_sessions.listing(eng, container).sessions if s.name == session), None)
    if found is None:
        return False
    if found.state in ("running", "starting"):
        return True
    # An ended or lost agent session leaves its record; the agent starts afresh under its name.
    output.warn(f"The last {session} session {found.state_text()}; its record and log make way for a new one")
    agent_sessions.control(eng, container, "remove", session)
    return False


def _start(eng: Any, container: Any, agent: Agent) -> None:
    try:
        agent_sessions.start(eng, container, agent.argv, name=agent.name, workdir=None, environment={}, log=True)
    except agent_sessions.SessionTaken:
        return  # another `cai run` started it a moment ago: attach to that one
    except CaiError as exc:
        if not any("command not found" in line for line in exc.extra):
            raise
        agent_sessions.control(eng, container, "remove", agent.name)
        raise CaiError(NOT_IN_IMAGE, f"Agent {agent.name} is not in the image of {container.name}: "
                       f"{output.shown(agent.command[0])}: command not found",
                       f"[HINT] cai image build --agents {agent.name}", "[HINT] Then recreate the container: cai run --fresh") from None
