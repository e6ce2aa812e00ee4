"""`cai export`: the data volume as a gzip tar, streamed through the engine API."""

from __future__ import annotations

import argparse

from cai import output
from cai.commands import Ctx

DESCRIPTION = ("Write the agent data volume as a gzip tar (default: ./containai-export-YYYYMMDD-HHMMSS.tgz). "
               "The data comes through the Docker API, so this works on remote contexts too. Prints the file's path.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="PATH", help="file or directory to write to")
    parser.add_argument("--container", metavar="NAME", help="export this container's volume")
    parser.add_argument("--data-volume", metavar="VOLUME", help="export this volume")
    parser.add_argument("-w", "--workspace", metavar="PATH", help="the workspace whose volume to export (default: current directory)")
    parser.add_argument("--config", metavar="PATH", help="config file for the volume and excludes")
    parser.add_argument("--no-excludes", action="store_true", help="ignore default_excludes and workspace excludes")
    parser.add_argument("--sessions", action="store_true", help="also the container's session records and logs "
                        "(~/.cai-sessions in the container, not in the volume), under .cai-sessions/; needs --container")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import volumes
    from cai.errors import CaiError, ExitCode

    if args.sessions and args.container is None:
        raise CaiError(ExitCode.ERROR, "--sessions needs --container NAME: sessions belong to a container, not a volume")
    target = volumes.resolve_target(explicit_context=ctx.context, container=args.container, volume=args.data_volume,
                                    workspace=args.workspace, config_path=args.config)
    extra = ()
    if args.sessions:
        from cai import agent_sessions

        extra = ((".cai-sessions", agent_sessions.SESSIONS_DIR),)
    path = volumes.export_target(target, args.output, use_excludes=not args.no_excludes, extra=extra)
    output.ok(f"Exported to: {path}")
    output.out(str(path))
    return 0
