"""`cai session new|ls|logs|send|wait|kill|prune`: agent sessions that outlive the client
(see cai/agent_sessions.py; `cai attach` is commands/attach.py)."""

from __future__ import annotations

import argparse

from cai import output
from cai.argparsing import add_global_flags
from cai.commands import Ctx
from cai.commands._target import add_container_flags, add_target_flags
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DESCRIPTION = ("Run commands in detached sessions (tmux, as the agent) that survive a closed terminal, a dropped "
               "connection and cai itself. Attach with `cai attach NAME`; detach with Ctrl-b d. Sessions end with the "
               "container: after a stop they are listed as lost.")

# A stopped command with nobody to resume it: the wrapper resumes it anyway.
REFUSED_SIGNALS = ("STOP", "TSTP", "TTIN", "TTOU")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="session_action", metavar="ACTION", title="actions", required=True,
                                    parser_class=type(parser))

    def action(name: str, help_text: str, description: str, *, create: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=description)
        (add_target_flags if create else add_container_flags)(sub)
        add_global_flags(sub, on_subcommand=True)
        return sub

    new = action("new", "start a command in a new detached session and print its name",
                 "Start CMD detached in a session named NAME (default: a short word), as the agent, in the workspace "
                 "(or --workdir), and print the name once CMD runs. A name in use, even by an ended session that was "
                 "not pruned, is an error.", create=True)
    new.add_argument("--workdir", metavar="PATH", help="run in PATH; a relative one is under /home/agent/workspace")
    new.add_argument("-e", "--env", metavar="NAME=VALUE", action="append", default=[], help="set in CMD's environment (repeatable)")
    new.add_argument("--log", action="store_true", help="capture the output to ~/.cai-sessions/NAME.log in the "
                     "container (its own: no other container sees it; a restart keeps it)")
    new.add_argument("rest", nargs=argparse.REMAINDER, metavar="[NAME] -- CMD ...", help="the session's name, then the command after --")
    new.set_defaults(_new_parser=new)

    ls = action("ls", "list the sessions", "List the container's sessions: name, state (running, exited (CODE), lost), "
                "start, attached clients, command and log. A stopped container's records are read without starting it.")
    ls.add_argument("-a", "--all", action="store_true", help="include ended and lost sessions")
    ls.add_argument("--json", action="store_true", help="print JSON (schema_version 1)")

    logs = action("logs", "print a session's output", "Print the session's captured output (--log), or else its "
                  "screen and scrollback (the final screen once it ended). On a terminal, OSC, DCS and APC sequences "
                  "(clipboard writes, links, graphics) are left out; colours stay.")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the session ends (needs --log)")
    logs.add_argument("--tail", metavar="N", type=_lines, help="only the last N lines")
    logs.add_argument("--raw", action="store_true", help="pass every byte through, on a terminal too")

    send = action("send", "type text and Enter into a session", "Type TEXT (words joined by spaces) and Enter into "
                  "the session, e.g. to drive a REPL.")
    send.add_argument("name", metavar="NAME")
    send.add_argument("text", nargs="+", metavar="TEXT")

    wait = action("wait", "wait until a session's command ends and exit with its code",
                  "Block until the session's command ends, print its exit code and exit with it (128+N for signal N). "
                  "The code is kept after the end and across restarts; a lost session is rc 1.")
    wait.add_argument("name", metavar="NAME")

    kill = action("kill", "signal a session's command", "Send SIGNAL (default TERM) to the session's command and its "
                  "process group.")
    kill.add_argument("name", metavar="NAME")
    kill.add_argument("-s", "--signal", metavar="SIGNAL", default="TERM", help="a name or number (default TERM)")

    prune = action("prune", "remove ended sessions and their logs", "Remove the records and logs of sessions that "
                   "exited or were lost, at least --age ago (default: all of them). Running sessions stay.")
    prune.add_argument("--age", metavar="AGE", default="0m", help="only those ended at least AGE ago: 30d, 12h, 1d12h")
    prune.add_argument("--dry-run", action="store_true", help="show what would be removed, change nothing")
    prune.add_argument("--json", action="store_true", help="print the result as JSON")


def _lines(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise argparse.ArgumentTypeError(f"invalid --tail value: {text!r}")
    return int(text)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    if args.session_action == "new":
        name, command = _split_new(args)
        ctx = Ctx(args.context, args.debug, ctx.passthrough)  # global flags after NAME were parsed only now
        output.configure(verbose=args.verbose, quiet=args.quiet)
        return _new(args, ctx, name, command)
    return globals()[f"_{args.session_action}"](args, ctx)


def _split_new(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    from cai import agent_sessions
    from cai.commands._target import split_remainder

    usage = "Usage: cai session new [NAME] [options] -- CMD ..."
    name, command = split_remainder(args, args._new_parser, usage)
    if not command:
        raise CaiError(ExitCode.ERROR, "No command specified", usage)
    return (agent_sessions.check_name(name) if name is not None else None), command


def _new(args: argparse.Namespace, ctx: Ctx, name: str | None, command: list[str]) -> int:
    from cai import agent_sessions, run_options
    from cai.commands._target import check_workdir, resolve_and_prepare

    environment = run_options.parse_environment(args.env)
    check_workdir(args.workdir)
    target, container = resolve_and_prepare(args, ctx.context, create_missing_named=False, workspace=args.workspace)
    started = agent_sessions.start(target.engine, container, command, name=name, workdir=args.workdir,
                                   environment=environment, log=args.log)
    output.out(started)
    output.info(f"Session {started} started in {container.name}: cai attach {started}, cai session wait {started}")
    return ExitCode.OK


def _existing(args: argparse.Namespace, ctx: Ctx) -> tuple[Any, Any]:
    """The container, running or stopped (a stopped one's records are read through the engine),
    but not paused."""
    from cai import containers
    from cai.commands._target import existing_container

    eng, container = existing_container(args, ctx)
    if container.status == "paused":
        raise containers.paused_error(container.name)
    return eng, container


def _running(args: argparse.Namespace, ctx: Ctx) -> tuple[Any, Any]:
    from cai import agent_sessions
    from cai.commands._target import existing_container

    eng, container = existing_container(args, ctx)
    return eng, agent_sessions.running_container(eng, container)


def _check(result: Any, name: str, container: Any) -> None:
    from cai import agent_sessions

    if result.rc == agent_sessions.RC_NO_SESSION:
        raise agent_sessions.not_found(name, container.name)
    if result.rc == agent_sessions.RC_NOT_RUNNING:
        raise agent_sessions.not_running(name)
    if result.rc != 0:
        raise CaiError(ExitCode.ERROR, f"Session {name}: the step failed ({result.rc})", *agent_sessions.said(result.err))


def _ls(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import agent_sessions

    eng, container = _existing(args, ctx)
    found = agent_sessions.listing(eng, container).sessions
    if not args.all:
        found = [s for s in found if s.state in ("running", "starting")]
    if args.json:
        output.emit_json({"container": container.name, "container_state": container.status,
                          "sessions": [s.as_json() for s in found]}, agent_sessions.SCHEMA_VERSION)
        return ExitCode.OK
    rows = [("NAME", "STATE", "STARTED", "ATTACHED", "COMMAND", "LOG")]
    for s in found:
        command = output.shown(_joined(s.command))
        rows.append((s.name, s.state_text(), agent_sessions.utc(s.started) or "?", str(s.attached),
                     command if len(command) <= 60 else command[:57] + "...",
                     agent_sessions.log_path(s.name) if s.has_log else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        output.out("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return ExitCode.OK


def _joined(command: list[str] | None) -> str:
    import shlex

    return "?" if command is None else shlex.join(command)


def _logs(args: argparse.Namespace, ctx: Ctx) -> int:
    import os

    from cai import agent_sessions

    name = agent_sessions.check_name(args.name)
    strip = not args.raw and os.isatty(1)
    eng, container = _existing(args, ctx)
    if not container.running:  # nothing more will come: -f prints what there is
        if name not in {s.name for s in agent_sessions.listing(eng, container).sessions}:
            raise agent_sessions.not_found(name, container.name)
        agent_sessions.print_stopped_log(eng, container, name, args.tail, strip=strip)
        return ExitCode.OK
    lines = "+1" if args.tail is None else str(args.tail)
    rc = agent_sessions.stream(eng, container, "logs", name, lines, "1" if args.follow else "0", strip=strip)
    if rc == agent_sessions.RC_NEEDS_LOG:
        raise CaiError(ExitCode.ERROR, f"Session {name} has no log to follow (it was started without --log)",
                       f"Watch it read-only instead: cai attach -r {name}")
    return rc


def _send(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import agent_sessions

    name = agent_sessions.check_name(args.name)
    eng, container = _running(args, ctx)
    _check(agent_sessions.control(eng, container, "send", name, " ".join(args.text)), name, container)
    return ExitCode.OK


def _wait(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import agent_sessions

    name = agent_sessions.check_name(args.name)
    eng, container = _existing(args, ctx)
    if container.running:
        code = agent_sessions.wait_for(eng, container, name)
    else:  # its records tell how it ended, without starting the container
        found = {s.name: s for s in agent_sessions.listing(eng, container).sessions}
        if name not in found:
            raise agent_sessions.not_found(name, container.name)
        if found[name].exit_code is None:
            raise agent_sessions.lost(name)
        code = found[name].exit_code
    output.out(str(code))
    return code


def _kill(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import agent_sessions
    from cai.commands.kill import signal_name

    name = agent_sessions.check_name(args.name)
    signame, number = signal_name(args.signal)
    if signame in REFUSED_SIGNALS:
        raise CaiError(ExitCode.ERROR, f"Signal {signame} is refused: the session would stop with nobody to resume it",
                       "To end it, use TERM, INT, HUP or KILL")
    eng, container = _running(args, ctx)
    _check(agent_sessions.control(eng, container, "kill", name, str(number)), name, container)
    output.info(f"Sent {signame} to session {name}")
    return ExitCode.OK


def _prune(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import agent_sessions, clock

    age = clock.parse_age(args.age)
    eng, container = _running(args, ctx)
    found = agent_sessions.listing(eng, container)
    now = found.now
    chosen, kept = [], []
    for s in found.sessions:
        if s.state not in ("exited", "lost"):
            continue
        ended = s.ended if s.state == "exited" else s.lost_at
        old_enough = age == 0 or (ended is not None and now is not None and now - ended >= age)
        (chosen if old_enough else kept).append(s.name)
    removed: list[str] = []
    if chosen and not args.dry_run:
        result = agent_sessions.control(eng, container, "remove", *chosen)
        said = {line.split("\t", 1)[1] for line in result.out.splitlines() if line.startswith("removed\t")}
        removed = [name for name in chosen if name in said]  # the agent's shell may print anything there
    if args.json:
        # "orphans" stays for scripts: records are in each container now, so there are none.
        output.emit_json({"container": container.name, "dry_run": args.dry_run, "age_seconds": age,
                          "removed": chosen if args.dry_run else removed, "kept": kept, "orphans": []},
                         agent_sessions.SCHEMA_VERSION)
        return ExitCode.OK
    verb = "Would remove" if args.dry_run else "Removed"
    for name in chosen if args.dry_run else removed:
        output.out(f"{verb}: {name}")
    if not chosen:
        output.info("No ended sessions to remove")
    return ExitCode.OK
