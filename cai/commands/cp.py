"""`cai cp SRC DEST`: copy files between this machine and the workspace container, either way.

One side is `:PATH` in the container (relative to /home/agent/workspace). The transfer is a tar
stream over the container's ssh login, so it runs as the agent, reaches remote engines through
their jump, and writes nothing in the container that the agent could not write itself. What
comes out is extracted here with tarfile's `data` filter (PEP 706): the container is untrusted.
The work is in cai/copying.py.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cai.commands._target import add_container_flags
from cai.errors import CaiError, ExitCode

if TYPE_CHECKING:
    from cai.main import Ctx


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cp",
        help="copy files between here and the workspace container",
        description="Copy SRC to DEST. Exactly one of them is `:PATH`, a path in the container (relative "
        "paths start at /home/agent/workspace). A directory is copied whole; when DEST is an existing "
        "directory, the copy goes inside it. Files copied in belong to the agent; what is copied out is "
        "checked first (no absolute paths, no `..`, no links that leave DEST, no devices).",
        epilog="Examples: cai cp ./data :inputs/  ·  cai cp :results/report.md ./report.md",
    )
    add_container_flags(parser)
    parser.add_argument("source", metavar="SRC", help="a local path, or :PATH in the container")
    parser.add_argument("destination", metavar="DEST", help="a local path, or :PATH in the container")
    return parser


def run(args: argparse.Namespace, ctx: "Ctx") -> int:
    from cai import copying

    into = args.destination.startswith(":")
    if into == args.source.startswith(":"):
        raise CaiError(ExitCode.ERROR, "Exactly one of SRC and DEST must be :PATH (a path in the container)",
                       "Write a local path that starts with ':' as ./:name")
    from cai import containers, labels

    target = containers.resolve(explicit_context=ctx.context, workspace_arg=args.workspace, container_arg=args.container,
                                volume_arg=None, create_missing_named=False)
    container = containers.prepare(target, image=labels.DEFAULT_IMAGE, memory=labels.DEFAULT_MEMORY,
                                   cpus=labels.DEFAULT_CPUS, fresh=False)
    if into:
        count = copying.copy_in(target.engine, container, args.source, args.destination[1:])
    else:
        count = copying.copy_out(target.engine, container, args.source[1:], args.destination)
    from cai import output

    output.ok(f"Copied {count} entries")
    return ExitCode.OK
