"""`cai restart [-t SECONDS]`: stop (with `cai stop`'s session rules) and start again, with SSH ready."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import ExitCode

DESCRIPTION = ("Stop the workspace container (with `cai stop`'s session rules) and start it again. It "
               "returns once sshd answers; the pinned host keys stay valid, since they live in the container.")


def _seconds(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > 86400:
        raise argparse.ArgumentTypeError(f"invalid -t value: {value!r} (whole seconds, at most 86400)")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("-t", "--time", metavar="SECONDS", type=_seconds,
                        help="seconds to wait for it to stop before killing it (default: its stop timeout, 100)")
    parser.add_argument("--force", action="store_true", help="restart even with active sessions")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import containers, engine, output, session_guard, ssh

    eng, container = existing_container(args, ctx)
    if container.status == "paused":
        raise containers.paused_error(container.name)
    verdict = session_guard.verdict(eng, container, force=args.force, interactive=output.isatty(), verb="restart",
                               gerund="restarting", command="restart")
    if verdict is not None:
        return verdict
    if container.running:
        ssh.release_master(containers.endpoint(container))
        output.info(f"Stopping: {container.name} [context: {eng.context}]")
        engine.stop_container(eng, container, args.time)
    started = containers.ensure_running(eng, container.name)
    containers.setup_ssh(eng, started)
    output.ok(f"Restarted: {container.name}")
    return ExitCode.OK
