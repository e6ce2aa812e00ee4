"""`cai unpause`: thaw a container that `cai pause` froze."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags

DESCRIPTION = "Thaw the workspace container's processes after `cai pause`."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai.commands.pause import set_paused

    return set_paused(args, ctx, paused=False)
