"""`cai cp SRC DEST`: copy files between this machine and a container, either way.

One side is in the container: `:PATH` (the workspace's container) or `NAME:PATH`, relative to
/home/agent/workspace. To a running container the transfer is a tar stream over its ssh login,
so it runs as the agent, reaches remote engines through their jump, and writes nothing the agent
could not write itself; a stopped one is read and written through the engine's archive API (see
cai/copying.py). What comes out is untrusted: cai/landing.py checks it whole before DEST changes.
"""

from __future__ import annotations

import argparse
import re

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Copy SRC to DEST. Exactly one of them is in the container: `:PATH` (the workspace's "
               "container, or --container's) or `NAME:PATH`; relative paths start at /home/agent/workspace. "
               "A directory is copied whole; when DEST is an existing directory, the copy goes inside it. `-` is a "
               "tar stream on stdin or stdout. Files copied in belong to the agent (-a keeps the archive's owners, "
               "stopped containers only); what is copied out is checked first (no absolute paths, no `..`, no links "
               "that leave DEST, no devices). A stopped container is read and written through the engine, not started.")
EPILOG = "Examples: cai cp ./data :inputs/  ·  cai cp proj-main:results/report.md .  ·  cai cp :logs - | tar -t"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("-a", "--archive", action="store_true",
                        help="keep the files' own owners (into a stopped container only)")
    parser.add_argument("source", metavar="SRC", help="a local path, -, :PATH or NAME:PATH")
    parser.add_argument("destination", metavar="DEST", help="a local path, -, :PATH or NAME:PATH")


_CONTAINER_SIDE = re.compile(r"^([a-zA-Z0-9][a-zA-Z0-9_.-]*)?:(.*)$", re.DOTALL)


def container_side(word: str) -> tuple[str | None, str] | None:
    """(NAME or None, PATH) for `NAME:PATH` or `:PATH`; None for a local path (`./a:b`, `/x:y`, `-`)."""
    found = _CONTAINER_SIDE.match(word)
    return (found.group(1), found.group(2)) if found else None


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import copying

    into, outof = container_side(args.destination), container_side(args.source)
    if (into is None) == (outof is None):
        raise CaiError(ExitCode.ERROR, "Exactly one of SRC and DEST must be :PATH (a path in the container)",
                       "Name a container's path as :PATH or NAME:PATH; write a local path with a ':' as ./a:b")
    name, path = into or outof
    if name is not None and args.container is not None and name != args.container:
        raise CaiError(ExitCode.ERROR, f"{name}: and --container {args.container} name two containers")
    if name is not None and args.workspace is not None:
        raise CaiError(ExitCode.ERROR, "NAME:PATH and --workspace are mutually exclusive")
    args.container = name or args.container
    eng, container = existing_container(args, ctx)
    if container.status == "paused":
        from cai import containers

        raise containers.paused_error(container.name)
    if into is not None:
        count = copying.copy_in(eng, container, args.source, path, keep_owners=args.archive)
    else:
        if args.archive:
            raise CaiError(ExitCode.ERROR, "-a is for copying into a container (copied out, files are yours)")
        count = copying.copy_out(eng, container, path, args.destination)
    from cai import output

    output.ok(f"Copied {count} {'bytes' if '-' in (args.source, args.destination) else 'entries'}")
    return ExitCode.OK
