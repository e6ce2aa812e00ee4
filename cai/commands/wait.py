"""`cai wait`: block until the container stops, print its exit code and exit with it."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import ExitCode

DESCRIPTION = ("Block until the workspace container stops (at once when it is not running), print its "
               "exit code and exit with it, so that `cai wait && echo ok` works (the printed code is exact: 10-15 "
               "may be the container's own, and one outside 0-255 exits 1). Ctrl-C is 130.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import engine, output

    eng, container = existing_container(args, ctx)
    code = engine.wait_container(eng, container.id)
    output.out(str(code))
    return code if 0 <= code <= 255 else ExitCode.ERROR  # an exit status cannot hold more; stdout has it
