"""`cai shell`: an interactive login shell in the workspace container."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_target_flags, resolve_and_prepare, workspace_choice

DESCRIPTION = "Open an interactive login shell (PTY) in /home/agent/workspace. The exit code is the shell's."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", metavar="PATH", help="workspace directory (default: current directory)")
    add_target_flags(parser)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import containers, ssh

    workspace = workspace_choice(args.path, args.workspace)
    target, container = resolve_and_prepare(args, ctx.context, create_missing_named=False, workspace=workspace)
    return containers.connect(target.engine, container, ssh.REMOTE_SHELL_COMMAND, tty="-tt")
