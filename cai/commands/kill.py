"""`cai kill [-s SIGNAL]`: send a signal to the container's main process (KILL by default)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cai.commands._target import add_container_flags, existing_container
from cai.errors import CaiError, ExitCode

if TYPE_CHECKING:
    from cai.main import Ctx

# The ones that end the container, and with it every session: they follow `cai stop`'s rules.
ENDING = ("SIGKILL", "SIGTERM")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "kill", help="send a signal to the container (KILL by default)",
        description="Send SIGNAL to the workspace container's main process. KILL and TERM end the container, "
        "so they follow `cai stop`'s session rules: with someone inside, a terminal is asked and anything "
        "else is refused unless --force.",
    )
    add_container_flags(parser)
    parser.add_argument("-s", "--signal", metavar="SIGNAL", default="KILL",
                        help="a name (TERM, SIGTERM) or a number (15); default KILL")
    parser.add_argument("--force", action="store_true", help="send KILL or TERM even with active sessions")
    return parser


def signal_name(text: str) -> str:
    """`SIGTERM` for `TERM`, `sigterm`, `SIGTERM` or `15`; rc 1 for anything else."""
    import signal

    word = text.strip().upper()
    try:
        if word.isdigit() and word.isascii():
            return signal.Signals(int(word)).name
        return signal.Signals[word if word.startswith("SIG") else f"SIG{word}"].name
    except (KeyError, ValueError):
        raise CaiError(ExitCode.ERROR, f"Invalid signal: {text}",
                       "Use a name such as TERM, INT or HUP, or a number such as 15") from None


def run(args: argparse.Namespace, ctx: "Ctx") -> int:
    from cai import engine, output, sessions

    name = signal_name(args.signal)  # before any engine call
    eng, container = existing_container(args, ctx)
    if not container.running:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is not running ({container.status})")
    if name in ENDING:
        verdict = sessions.verdict(eng, container, force=args.force, interactive=output.isatty(), verb="kill",
                                   command=f"kill -s {name[3:]}")
        if verdict is not None:
            return verdict
    engine.kill_container(eng, container.id, name)
    output.ok(f"Sent {name} to {container.name}")
    return ExitCode.OK
