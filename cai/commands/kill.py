"""`cai kill [-s SIGNAL]`: send a signal to the container's main process (KILL by default)."""

from __future__ import annotations

import argparse

from cai import output
from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Send SIGNAL to the workspace container's main process. Nearly every signal ends its init, and with it "
               "the container, so all but CONT, STOP, TSTP, TTIN, TTOU, WINCH, CHLD and URG follow `cai stop`'s "
               "session rules: with someone inside, a terminal is asked and anything else is refused unless --force.")

# Linux's numbering, whatever this client's OS calls its own (Docker passes a number through).
LINUX_SIGNALS = ("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
                 "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
                 "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS")  # 1..31
RTMIN, RTMAX = 34, 64  # as glibc and Docker count them
# The container's init dies of nearly every other signal (or traps it and stops): those follow
# `cai stop`'s session rules. These leave it running.
HARMLESS = ("CONT", "STOP", "WINCH", "CHLD", "URG", "TSTP", "TTIN", "TTOU")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("-s", "--signal", metavar="SIGNAL", default="KILL",
                        help="a name (TERM, SIGTERM) or a number (15); default KILL")
    parser.add_argument("--force", action="store_true", help="send it even with active sessions")


def signal_name(text: str) -> tuple[str, int]:
    """(`TERM`, 15) for `TERM`, `sigterm`, `SIGTERM` or `15`; `RTMIN+3` and 1-64 by number. rc 1
    for anything else, before any engine call."""
    word = text.strip().upper().removeprefix("SIG")
    number = None
    if word.isascii() and word.isdigit():
        number = int(word)
    elif word in LINUX_SIGNALS:
        number = LINUX_SIGNALS.index(word) + 1
    elif word.startswith(("RTMIN", "RTMAX")):
        offset = word[5:]
        if offset == "":
            number = RTMIN if word.startswith("RTMIN") else RTMAX
        elif offset[:1] in "+-" and offset[1:].isascii() and offset[1:].isdigit():
            number = (RTMIN + int(offset[1:])) if word.startswith("RTMIN") and offset[0] == "+" else \
                (RTMAX - int(offset[1:])) if word.startswith("RTMAX") and offset[0] == "-" else None
    if number is None or not (1 <= number <= RTMAX) or 32 <= number < RTMIN:
        raise CaiError(ExitCode.ERROR, f"Invalid signal: {output.shown(text)}",
                       "Use a name such as TERM, INT or HUP, or a number such as 15")
    if number <= len(LINUX_SIGNALS):
        return LINUX_SIGNALS[number - 1], number
    return (f"RTMIN+{number - RTMIN}" if number - RTMIN <= RTMAX - number else f"RTMAX-{RTMAX - number}"), number


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import engine, session_guard

    name, number = signal_name(args.signal)  # before any engine call
    eng, container = existing_container(args, ctx)
    if not container.running:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is not running ({container.status})")
    if name not in HARMLESS:
        verdict = session_guard.verdict(eng, container, force=args.force, interactive=output.isatty(), verb="kill",
                                   gerund="killing", command=f"kill -s {name}")
        if verdict is not None:
            return verdict
    engine.kill_container(eng, container.id, str(number))
    output.ok(f"Sent SIG{name} to {container.name}")
    return ExitCode.OK
