"""`cai top [ps options]`: the container's processes, from the engine's top endpoint."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DESCRIPTION = ("List the processes of the workspace container, as the engine's `ps` sees them from the host (host "
               "pids). Options after the flags (or after --) go to ps, as with `docker top`, e.g. `cai top -- aux`.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("ps_options", nargs=argparse.REMAINDER, metavar="PS_OPTIONS", help="options for ps (default: -ef)")


def render(top: dict[str, Any]) -> list[str]:
    """docker top's table: the titles, then a row per process, columns padded to their widest cell."""
    titles = [str(t) for t in top.get("Titles") or ()]
    rows = [[str(cell) for cell in row] for row in top.get("Processes") or ()]
    if not titles:
        return []
    widths = [max([len(titles[i]), *(len(row[i]) for row in rows if i < len(row))]) for i in range(len(titles))]
    lines = []
    for row in [titles, *rows]:
        cells = [cell.ljust(widths[i]) if i < len(titles) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return lines


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import engine, output

    words = list(args.ps_options)
    if words[:1] == ["--"]:
        words = words[1:]
    eng, container = existing_container(args, ctx)
    if not container.running:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is not running ({container.status})")
    for line in render(engine.container_top(eng, container.id, " ".join(words) or None)):
        output.out(line)
    return ExitCode.OK
