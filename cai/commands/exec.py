"""`cai exec [--container N | -w P] [--] CMD…`: run one command in the workspace container."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cai.commands._target import add_target_flags, creation_flags_given, resolve_and_prepare
from cai.errors import CaiError, ExitCode

if TYPE_CHECKING:
    from cai.main import Ctx


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "exec",
        help="run a command in the workspace container",
        description="Run CMD in /home/agent/workspace through `bash -lc` over SSH. Streams and the exit "
        "code are the command's own; 10-15 mean cai could not run it (see docs/exit-codes.md).",
    )
    add_target_flags(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")
    return parser


def run(args: argparse.Namespace, ctx: "Ctx") -> int:
    from cai import output, ssh

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CaiError(ExitCode.ERROR, "No command specified", "Usage: cai exec [options] [--] <command> [args...]")
    tty = "-t" if output.isatty() else None  # a PTY only when stdin and stdout are both terminals
    remote = ssh.remote_exec_command(command)
    from cai import labels, reach

    fast = ssh.multiplexing() and not creation_flags_given(args)
    if fast:
        workspace = labels.resolve_workspace(args.workspace)
        cache_key = reach.key(ctx.context, args.container, workspace)
        known = reach.lookup(cache_key)
        if known is not None:
            outcome = ssh.run_session(known, remote, tty=tty, shared=True)
            if outcome.signal is not None:
                return 128 + outcome.signal
            if outcome.rc != 255 or outcome.sent:
                return outcome.rc
            reach.forget(cache_key)  # stopped, moved or recreated: the engine knows
    from cai import containers

    target, container = resolve_and_prepare(args, ctx.context, create_missing_named=False, workspace=args.workspace)
    if fast:  # a shared connection made before whatever changed is not reused
        ssh.release_master(containers.endpoint(container))
    rc = containers.connect(target.engine, container, remote, tty=tty, shared=fast)
    if fast:  # the key again: the slow path may have just saved the workspace's state
        reach.remember(reach.key(ctx.context, args.container, workspace), containers.endpoint(container))
    return rc
