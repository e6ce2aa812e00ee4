"""`cai pause`: freeze every process of the container (the cgroup freezer)."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import ExitCode

DESCRIPTION = ("Freeze every process in the workspace container. `cai status` shows `paused`; `gc` and "
               "`stop --all` leave a paused container alone. Thaw it with `cai unpause`.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    return set_paused(args, ctx, paused=True)


def set_paused(args: argparse.Namespace, ctx: Ctx, *, paused: bool) -> int:
    from cai import engine, output, ssh

    eng, container = existing_container(args, ctx)
    if paused:  # a shared connection or a cached route to a frozen sshd would hang the next exec for seconds
        from cai import containers, reach

        endpoint = containers.endpoint(container)
        ssh.release_master(endpoint, wait_s=0.5)
        reach.forget_alias(endpoint.alias)
    engine.pause_container(eng, container.id, paused=paused)
    output.ok(f"{'Paused' if paused else 'Unpaused'}: {container.name}")
    return ExitCode.OK
