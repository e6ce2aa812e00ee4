"""`cai gc`: remove stale cai containers (and, with --images, unused cai images). The rules and
the work are in cai/pruning.py."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cai import output
from cai.errors import ExitCode

if TYPE_CHECKING:
    from cai.main import Ctx
    from cai.pruning import Plan

DEFAULT_AGE = "30d"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "gc",
        help="remove stale cai containers (and unused cai images)",
        description="Remove cai containers that have been stopped (or never started) for at least --age, measured on "
        "the engine's clock. Running, paused and restarting containers, containers labelled containai.keep=true (or 1, yes) "
        "and containers cai does not manage are never removed. Asks first on a terminal; elsewhere it removes "
        "only with --force.",
        epilog="From cron: cai gc --force --json --age 14d >~/.local/state/cai-gc.json",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.add_argument("--force", action="store_true", help="remove without asking")
    parser.add_argument("--age", metavar="AGE", default=DEFAULT_AGE,
                        help="minimum idle time: Nw, Nd, Nh, Nm (minutes) or a combination such as 1d12h (default: 30d)")
    parser.add_argument("--images", action="store_true",
                        help="also remove containai:* and ghcr.io/containai/* images that no container uses")
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema_version 1); never asks")
    parser.missing_value_hints = {"--age": " (e.g., 30d, 7d, 24h)"}
    return parser


# --- the command -----------------------------------------------------------------------------


def _confirmed(plan: "Plan", args: argparse.Namespace) -> bool:
    if args.force:
        return True
    if args.json or not output.isatty():
        return False
    from cai import prompts

    return bool(prompts.confirm(f"Remove {plan.total} resource(s)?"))


def run(args: argparse.Namespace, ctx: "Ctx") -> int:
    import os
    from pathlib import Path

    from cai import clock, engine, pruning

    threshold = clock.parse_age(args.age)  # before any engine call, as the original
    eng = engine.Engine(engine.resolve_context(ctx.context, Path(os.getcwd())))
    plan = pruning.make_plan(eng, args.age, threshold, with_images=args.images)

    def finish(*, cancelled: bool = False, outcome: pruning.Outcome | None = None) -> None:
        if args.json:
            output.emit_json(pruning.json_document(plan, dry_run=args.dry_run, cancelled=cancelled, outcome=outcome))

    if not args.json:
        for line in pruning.render_plan(plan):
            output.out(line)
    if not plan.total:
        finish()
        return ExitCode.OK
    if args.dry_run:
        if not args.json:
            helpers = f" and {len(plan.helpers)} leftover helper(s)" if plan.helpers else ""
            output.out(f"[DRY-RUN] Would remove {len(plan.candidates)} container(s) and {len(plan.images)} image(s){helpers}")
        finish()
        return ExitCode.OK
    if not _confirmed(plan, args):
        if not args.json:
            output.out("Cancelled.")
        finish(cancelled=True)
        return ExitCode.OK
    outcome = pruning.remove_all(eng, plan)
    if not args.json:
        for line in pruning.render_outcome(outcome):
            output.out(line)
    finish(outcome=outcome)
    return ExitCode.ERROR if outcome.errors else ExitCode.OK
