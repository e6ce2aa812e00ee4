"""`cai shell`: an interactive login shell in the workspace container."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cai.commands._target import add_target_flags, resolve_and_prepare

if TYPE_CHECKING:
    from cai.main import Ctx


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "shell",
        help="open a login shell in the workspace container",
        description="Open an interactive login shell (PTY) in /home/agent/workspace. The exit code is the shell's.",
    )
    parser.add_argument("path", nargs="?", metavar="PATH", help="workspace directory (default: current directory)")
    add_target_flags(parser)
    return parser


def run(args: argparse.Namespace, ctx: "Ctx") -> int:
    from cai import containers, ssh
    from cai.errors import CaiError, ExitCode

    if args.path is not None and args.workspace is not None:
        raise CaiError(ExitCode.ERROR, "Give the workspace once: PATH or --workspace")
    target, container = resolve_and_prepare(args, ctx.context, create_missing_named=False, workspace=args.path or args.workspace)
    return containers.connect(target.engine, container, ssh.REMOTE_SHELL_COMMAND, tty="-tt")
