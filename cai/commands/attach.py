"""`cai attach [-r] NAME`: this terminal on a detached agent session (see agent_sessions.py)."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Attach this terminal to session NAME (started with `cai session new` or `cai run -d`). Ctrl-b "
               "then d detaches and leaves it running; several clients may attach at once. Needs a terminal.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("-r", "--read-only", action="store_true", help="watch without typing into it")
    parser.add_argument("name", metavar="NAME")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import agent_sessions, output
    from cai.commands._target import existing_container

    name = agent_sessions.check_name(args.name)
    if not output.isatty():
        raise CaiError(ExitCode.ERROR, "cai attach needs a terminal (stdin and stdout)",
                       f"Without one, use: cai session logs {name}, cai session send {name} -- TEXT")
    eng, container = existing_container(args, ctx)
    agent_sessions.running_container(eng, container)
    rc = agent_sessions.stream(eng, container, "attach", name, "1" if args.read_only else "0", tty="-t")
    if rc == agent_sessions.RC_NOT_RUNNING:
        raise agent_sessions.not_running(name)
    return rc
