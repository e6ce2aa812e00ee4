"""`cai logs [-f] [--tail N] [--since T] [-t]`: the container's log, through the engine's API.

The container's stdout goes to stdout and its stderr to stderr, each read as its own stream (the
engine keeps them apart; one merged stream could not be split again).
"""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import ExitCode

DESCRIPTION = ("Show the workspace container's log (its main process: init and sshd). With -f, follow it "
               "until Ctrl-C (rc 0) or until the container stops.")


def _tail(value: str) -> int | None:
    if value == "all":
        return None
    if not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError(f"invalid --tail value: {value!r} (a number of lines, or all)")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the container stops")
    parser.add_argument("--tail", metavar="N", type=_tail, help="only the last N lines (default: all)")
    parser.add_argument("--since", metavar="T", help="only lines since T: RFC 3339, or a duration back from now (10m, 2h, 1d12h)")
    parser.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with the engine's timestamp")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    import threading
    import time

    from cai import clock, engine

    since = clock.parse_since(args.since, time.time()) if args.since is not None else None  # before any engine call
    eng, container = existing_container(args, ctx)
    failures: list[BaseException] = []
    ended = threading.Event()  # one stream failed, or its reader went away (`cai logs -f | head`): stop both

    def pump(stream: str, fd: int) -> None:
        import os

        try:
            for chunk in engine.container_logs(eng, container.id, stream=stream, follow=args.follow, tail=args.tail,
                                               since=since, timestamps=args.timestamps):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except BrokenPipeError:
            ended.set()
        except BaseException as exc:  # noqa: BLE001 - raised again by the main thread
            failures.append(exc)
            ended.set()

    threads = [threading.Thread(target=pump, args=pair, daemon=True) for pair in (("stdout", 1), ("stderr", 2))]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads) and not ended.wait(0.2):
            pass
    except KeyboardInterrupt:  # following ends with Ctrl-C; that is not an error, unless a stream had failed
        pass
    if failures:
        raise failures[0]
    return ExitCode.OK  # the other stream's thread is a daemon: it ends with cai
