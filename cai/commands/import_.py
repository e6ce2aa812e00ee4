"""`cai import`: restore a data volume from an export (or a directory), checked before written."""

from __future__ import annotations

import argparse

from cai import output
from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Replace the data volume's contents with an archive made by `cai export` (or a directory). "
               "Every entry is checked before anything is written, symlinks are kept as they are, and setuid, setgid "
               "and sticky bits are cleared (docs/export-import.md). shell/bashrc.d/*.priv.* is left out unless "
               "[import].exclude_priv = false.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", metavar="ARCHIVE|DIR", help="what to restore (required)")
    parser.add_argument("--container", metavar="NAME", help="restore into this container's volume")
    parser.add_argument("--data-volume", metavar="VOLUME", help="restore into this volume (created when missing)")
    parser.add_argument("-w", "--workspace", metavar="PATH", help="the workspace whose volume to restore (default: current directory)")
    parser.add_argument("--config", metavar="PATH", help="config file for the volume and excludes")
    parser.add_argument("--dry-run", action="store_true", help="list what would be restored, change nothing")
    parser.add_argument("--no-excludes", action="store_true", help="restore shell/bashrc.d/*.priv.* files too")
    parser.add_argument("--no-secrets", action="store_true", help="also leave out credentials, keys and *.priv.* files")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    import os
    from pathlib import Path

    from cai import archives, volumes

    if not args.source:
        raise CaiError(ExitCode.ERROR, "Nothing to import: give --from ARCHIVE|DIR", "Use 'cai import --help' for usage")
    source = Path(os.path.expanduser(args.source)).absolute()
    target = volumes.resolve_target(explicit_context=ctx.context, container=args.container, volume=args.data_volume,
                                    workspace=args.workspace, config_path=args.config)
    # What the archive holds is restored (export already applied the excludes), except *.priv.*.
    patterns: list[str] = []
    if not args.no_excludes and target.layers.import_excludes_private():
        patterns += volumes.PRIVATE_PATTERNS
    if args.no_secrets:
        patterns += volumes.SECRET_PATTERNS
    patterns = archives.normalize_patterns(patterns)
    if args.dry_run:
        plan = volumes.dry_run(source, patterns)
        for entry in plan.entries:
            output.out(f"{archives.shown_name(entry.rel)}{'/' if entry.kind == archives.DIR else ''}")
        output.ok(f"Dry run: {len(plan.entries)} entries would be restored into volume {target.volume}")
        return 0
    count = volumes.restore(target.engine, target.volume, source, patterns=patterns)
    output.ok(f"Imported {count} entries into volume {target.volume}")
    return 0
