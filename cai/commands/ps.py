"""`cai ps`: list cai's containers with their workspace, state, SSH port, uptime and sessions."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DESCRIPTION = ("List cai's workspace containers: name, state (and health), workspace, image, SSH port, "
               "uptime or age, and whether someone is inside (HAS/NONE/UNKNOWN, asked side by side within 5 s). "
               "Running, paused and restarting ones by default, as docker ps.")

JSON_SCHEMA_VERSION = 2
OWN_SHORT_FLAGS = ("-q",)  # names only, as docker ps -q; the global --quiet keeps its long form


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="every state, stopped and created ones too")
    parser.add_argument("--format", metavar="FORMAT", default="table",
                        help="table (default), json, or a template such as '{{.Name}}\\t{{.Status}}'")
    parser.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[],
                        help="label=K[=V], status=STATE, name=TEXT or workspace=PATH (repeatable)")
    parser.add_argument("-q", dest="names_only", action="store_true", help="print only the names (what --container takes)")
    parser.add_argument("--no-sessions", action="store_true", help="do not look inside the containers (faster)")
    parser.add_argument("--all-contexts", action="store_true", help="every Docker context, side by side (5 s each)")


def json_promised(args: argparse.Namespace) -> int | None:
    return JSON_SCHEMA_VERSION if args.format == "json" else None


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import all_contexts, listing, output, templates

    filters = listing.parse_filters(args.filter)  # all of it before any engine call
    if not args.all and "status" not in filters:  # as docker ps: the ones not stopped
        filters["status"] = ["running", "paused", "restarting"]
    template = None
    if args.format not in ("table", "json"):
        template = templates.Template(args.format)
        templates.check_fields(template, listing.TEMPLATE_FIELDS)
    with_sessions = not args.no_sessions and not args.names_only

    def rows_of(eng: Any) -> list[dict[str, Any]]:
        return listing.context_rows(eng, filters, with_sessions=with_sessions)

    def identified_rows(eng: Any) -> tuple[str, list[dict[str, Any]]]:
        rows = rows_of(eng)
        return all_contexts.engine_identity(eng.call("info"), [row["id"] for row in rows]), rows

    unreachable: list[Any] = []
    same: list[dict[str, str]] = []
    if args.all_contexts:
        if ctx.context is not None:
            raise CaiError(ExitCode.ERROR, "--all-contexts and --context are mutually exclusive")
        answered, unreachable = all_contexts.fan_out(identified_rows,
                                                     budget=all_contexts.BUDGET_S + listing.SESSIONS_BUDGET_S)
        kept, same = all_contexts.one_per_engine(answered, lambda answer: answer[0])  # Desktop's default and desktop-linux
        all_contexts.warn_unreachable(unreachable)
        all_contexts.warn_same_engine(same)
        if not answered:
            raise all_contexts.none_answered(unreachable)
        rows = [row for _, (_, context_rows) in kept for row in context_rows]
    else:
        from cai import engine, resolution

        rows = rows_of(engine.Engine(resolution.context_here(ctx.context)))
    if args.names_only:
        for row in rows:
            output.out(row["name"])
    elif args.format == "json":
        document: dict[str, Any] = {"containers": [listing.as_json(row) for row in rows]}
        if args.all_contexts:
            document["unreachable"] = all_contexts.json_unreachable(unreachable)
            document["same_engine"] = same
        output.emit_json(document, schema_version=JSON_SCHEMA_VERSION)
    elif template is not None:
        for row in rows:
            output.out(template.render(listing.template_view(row)))
    else:
        for line in listing.table(rows, with_context=args.all_contexts):
            output.out(line)
    return ExitCode.OK
