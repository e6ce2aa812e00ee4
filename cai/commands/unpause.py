"""`cai unpause`: thaw a container that `cai pause` froze."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("unpause", help="thaw a paused container",
                                   description="Thaw the workspace container's processes after `cai pause`.")
    add_container_flags(parser)
    return parser


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai.commands.pause import set_paused

    return set_paused(args, ctx, paused=False)
