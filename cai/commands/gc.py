"""`cai gc`: remove stale cai containers (and, with --images, unused cai images). The rules and
the work are in cai/pruning.py.

`--all-contexts` makes the same plan on every context at once (cai/all_contexts.py: 5 s each, the
unreachable reported), shows one list with each line's context, and removes, after the same
confirmation, context by context: removal waits for each engine, as a single-context gc does."""

from __future__ import annotations

import argparse

from cai import output
from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cai.pruning import Plan

DESCRIPTION = ("Remove cai containers that have been stopped (or never started) for at least --age, measured on the "
               "engine's clock. Running, paused and restarting containers, containers labelled containai.keep=true "
               "(or 1, yes) and containers cai does not manage are never removed. Asks first on a terminal; elsewhere "
               "it removes only with --force.")
EPILOG = "From cron: cai gc --force --json --age 14d >~/.local/state/cai-gc.json"

DEFAULT_AGE = "30d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.add_argument("--force", action="store_true", help="remove without asking")
    parser.add_argument("--age", metavar="AGE", default=DEFAULT_AGE,
                        help="minimum idle time: Nw, Nd, Nh, Nm (minutes) or a combination such as 1d12h (default: 30d)")
    parser.add_argument("--images", action="store_true",
                        help="also remove containai:* and ghcr.io/containai/* images that no container uses")
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema_version 1); never asks")
    parser.add_argument("--all-contexts", action="store_true",
                        help="every Docker context, planned side by side (5 s each); unreachable contexts are reported, "
                        "the others still done")
    parser.missing_value_hints = {"--age": " (e.g., 30d, 7d, 24h)"}


# --- the command -----------------------------------------------------------------------------


def _confirmed(total: int, args: argparse.Namespace) -> bool:
    if args.force:
        return True
    if args.json or not output.isatty():
        return False
    from cai import prompts

    return bool(prompts.confirm(f"Remove {total} resource(s)?"))


def _dry_run_line(candidates: int, images: int, helpers: int) -> str:
    more = f" and {helpers} leftover helper(s)" if helpers else ""
    return f"[DRY-RUN] Would remove {candidates} container(s) and {images} image(s){more}"


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import clock, engine, pruning, resolution

    if args.all_contexts and ctx.context is not None:
        raise CaiError(ExitCode.ERROR, "--all-contexts and --context are mutually exclusive")
    threshold = clock.parse_age(args.age)  # before any engine call, as the original
    if args.all_contexts:
        return _run_all_contexts(args, threshold)
    eng = engine.Engine(resolution.context_here(ctx.context))
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
            output.out(_dry_run_line(len(plan.candidates), len(plan.images), len(plan.helpers)))
        finish()
        return ExitCode.OK
    if not _confirmed(plan.total, args):
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


def _run_all_contexts(args: argparse.Namespace, threshold: int) -> int:
    from cai import all_contexts, engine, pruning

    def plan_one(eng: "engine.Engine") -> tuple["Plan", pruning.Notes]:
        notes: pruning.Notes = []  # printed below, in context order, never from this thread
        return pruning.make_plan(eng, args.age, threshold, with_images=args.images, notes=notes), notes

    answered, unreachable = all_contexts.fan_out(plan_one)
    answered, same = all_contexts.one_per_engine(answered, lambda answer: answer[0].engine_id)
    all_contexts.warn_unreachable(unreachable)
    all_contexts.warn_same_engine(same)
    for context, (_, notes) in answered:
        for level, message in notes:
            getattr(output, level)(message + pruning.context_suffix(context))
    plans = [plan for _, (plan, _) in answered]
    outcomes: dict[str, pruning.Outcome] = {}

    def finish(*, cancelled: bool = False) -> None:
        if args.json:
            output.emit_json(pruning.merged_document(
                plans, outcomes, all_contexts.json_unreachable(unreachable), age=args.age,
                threshold_seconds=threshold, dry_run=args.dry_run, cancelled=cancelled, same_engine=same))

    if not plans:
        finish()
        raise all_contexts.none_answered(unreachable)
    if not args.json:
        for line in pruning.render_plans(plans, args.age):
            output.out(line)
    total = sum(plan.total for plan in plans)
    if not total:
        finish()
        return ExitCode.OK
    if args.dry_run:
        if not args.json:
            output.out(_dry_run_line(sum(len(p.candidates) for p in plans), sum(len(p.images) for p in plans),
                                     sum(len(p.helpers) for p in plans)))
        finish()
        return ExitCode.OK
    if not _confirmed(total, args):
        if not args.json:
            output.out("Cancelled.")
        finish(cancelled=True)
        return ExitCode.OK
    for plan in plans:
        if not plan.total:
            continue
        done = outcomes[plan.context] = pruning.Outcome()
        try:
            pruning.remove_all(engine.Engine(plan.context), plan, done, where=pruning.context_suffix(plan.context))
        except CaiError as exc:  # this context failed mid-way: the others still go
            reason = all_contexts.reason(exc)
            output.warn(f"context {plan.context}: {reason}")
            done.errors.append({"kind": "context", "name": plan.context, "message": reason})
    merged = pruning.merged_outcome(list(outcomes.values()))
    if not args.json:
        for line in pruning.render_outcome(merged):
            output.out(line)
    finish()
    return ExitCode.ERROR if merged.errors else ExitCode.OK
