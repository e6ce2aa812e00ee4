"""`cai exec [--container N | -w P] [--] CMD…`: run one command in the workspace container."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_target_flags, check_workdir, creation_flags_given, resolve_and_prepare
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Run CMD in /home/agent/workspace through `bash -lc` over SSH. Streams and the exit "
               "code are the command's own; 10-15 mean cai could not run it (see docs/exit-codes.md).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_flags(parser)
    own = parser.add_argument_group("the command")
    own.add_argument("-u", "--user", metavar="USER", help="run as USER (default: agent, over ssh); another user, "
                     "root included, runs through the engine's exec")
    own.add_argument("-e", "--env", metavar="NAME=VALUE", action="append", default=[],
                     help="set in the command's environment (repeatable)")
    own.add_argument("--workdir", metavar="PATH", help="run in PATH; a relative one is under /home/agent/workspace "
                     "(default: the workspace for the agent, / for another user)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")


AGENT_USERS = ("agent", "1000", "1000:1000")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import output, ssh

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CaiError(ExitCode.ERROR, "No command specified", "Usage: cai exec [options] [--] <command> [args...]")
    environment: dict[str, str] = {}
    if args.env:  # run_options costs dataclasses (inspect, ast, dis) at import
        from cai import run_options

        environment = run_options.parse_environment(args.env)
    check_workdir(args.workdir)
    tty = "-t" if output.isatty() else None  # a PTY only when stdin and stdout are both terminals
    if args.user is not None and args.user not in AGENT_USERS:
        return _exec_through_engine(args, ctx, command, environment, tty is not None)
    remote = ssh.remote_exec_command([*(f"{key}={value}" for key, value in environment.items()), *command], args.workdir)
    from cai import labels, reach

    fast = ssh.multiplexing() and not creation_flags_given(args)
    known = finding = None
    if fast:
        workspace = labels.resolve_workspace(args.workspace)
        cache_key = reach.key(ctx.context, args.container, workspace)
        known = reach.lookup(cache_key)
        if known is None:
            known, finding = reach.find_or_wait(cache_key)
        if known is not None:
            outcome = ssh.run_session(known, remote, tty=tty, shared=True)
            if outcome.signal is not None:
                return 128 + outcome.signal
            if outcome.rc != 255 or outcome.sent:
                return outcome.rc
            reach.forget(cache_key)  # stopped, moved or recreated: the engine knows
    from cai import containers

    try:
        target, container = resolve_and_prepare(args, ctx.context, create_missing_named=False,
                                                workspace=args.workspace)
        if fast:
            found = containers.endpoint(container)
            # A shared connection made before whatever changed is not reused: one that just failed,
            # or one older than the pinned keys. A sibling's, made since (a burst of first calls
            # after `cai run`), was checked against them and is kept for the rest of the burst.
            ssh.release_master(found, keep_checked=known is None)
            if finding is not None:  # before the command runs, so that the calls waiting for it go now
                reach.remember(cache_key, found)
    finally:
        reach.release(finding)
    rc = containers.connect(target.engine, container, remote, tty=tty, shared=fast)
    if fast:  # the key again: the slow path may have just saved the workspace's state (and the keys)
        reach.remember(reach.key(ctx.context, args.container, workspace), containers.endpoint(container))
    return rc


def _exec_through_engine(args: argparse.Namespace, ctx: Ctx, command: list[str], environment: dict[str, str],
                         tty: bool) -> int:
    """sshd logs in the agent alone: any other user is the engine's exec (the docker CLI)."""
    import os
    import posixpath
    import sys

    from cai import engine, ssh

    _, container = resolve_and_prepare(args, ctx.context, create_missing_named=False, workspace=args.workspace)
    # Not the agent's workspace by default: root there would run what the agent planted (a json.py
    # beside `python3 -c 'import json'`, a Makefile).
    workdir = posixpath.join(ssh.WORKDIR, args.workdir) if args.workdir else "/"
    argv = engine.docker_exec_argv(container.context, container.id, user=args.user, workdir=workdir,
                                   environment=environment, tty=tty, command=command)
    sys.stdout.flush()
    sys.stderr.flush()
    from cai import proc

    os.execve(argv[0], argv, proc.child_env(engine.cli_env()))
    return ExitCode.ERROR  # not reached
