"""`cai stop`: stop (or remove) workspace containers, never under someone's feet.

Three modes, as in the original: `--container NAME`; the current directory's workspace state;
and the list (`--all`, or a picker on a TTY). Each container goes through export (when asked),
then the session check, then stop. With sessions present, a TTY is asked and anything else is
refused unless `--force`.
"""

from __future__ import annotations

import argparse
import os

from cai import output
from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cai import engine

DESCRIPTION = ("Stop the current workspace's container, a named one, or several. Before stopping, cai looks for "
               "SSH connections, terminals and exec sessions inside: on a terminal it asks, otherwise it refuses "
               "unless --force. Without workspace state or --container, it lists containers to pick from.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--container", metavar="NAME", help="stop this container")
    parser.add_argument("--all", action="store_true", help="stop every cai container without asking which")
    parser.add_argument("--remove", action="store_true", help="remove the container (docker rm -f) and its ssh config")
    parser.add_argument("--force", action="store_true", help="stop even with active sessions or a failed export")
    parser.add_argument("--export", action="store_true", help="export the data volume first (not with --all)")
    parser.add_argument("--name", help=argparse.SUPPRESS)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import labels

    if args.name is not None:
        raise CaiError(ExitCode.ERROR, "--name is no longer supported. Use --container instead.")
    if args.container is not None and args.all:
        raise CaiError(ExitCode.ERROR, "--container and --all are mutually exclusive")
    if args.export and args.all:
        raise CaiError(ExitCode.ERROR, "--export and --all are mutually exclusive")
    cwd = labels.normalize_path(os.getcwd())
    if args.container is not None:
        return _stop_named(args, ctx, labels.validate_container_name(args.container), cwd)
    if not args.all:
        from cai import config

        saved = config.workspace_state(cwd).get("container_name")
        if isinstance(saved, str) and saved:
            return _stop_from_state(args, ctx, saved, cwd)
    return _stop_listed(args, ctx, cwd)


# --- one container ---------------------------------------------------------------------------


def _stop_named(args: argparse.Namespace, ctx: Ctx, name: str, cwd: str) -> int:
    from pathlib import Path

    from cai import resolution

    return _stop_one(args, resolution.find_managed(name, explicit_context=ctx.context, workspace=Path(cwd)))


def _stop_from_state(args: argparse.Namespace, ctx: Ctx, name: str, cwd: str) -> int:
    from pathlib import Path

    from cai import labels, resolution

    container = resolution.find_named(name, explicit_context=ctx.context, workspace=Path(cwd))
    if container is None:
        output.warn(f"Container from workspace state not found: {name}")
        return ExitCode.OK
    resolution.require_managed(container)
    owner = labels.label(container.labels, labels.WORKSPACE)
    if owner and owner != cwd:
        raise CaiError(ExitCode.ERROR, f"Container '{name}' belongs to workspace '{owner}', not current directory.",
                       f"        Use 'cai stop --container {name}' to force, or fix workspace state.")
    return _stop_one(args, container)


def _stop_one(args: argparse.Namespace, container: "engine.Container") -> int:
    """Export, session check, stop: for a single container (modes A and B)."""
    from cai import engine

    eng = engine.Engine(container.context)
    if args.export:
        _export(container, force=args.force)
    from cai import session_guard

    verdict = session_guard.verdict(eng, container, force=args.force, interactive=output.isatty())
    if verdict is not None:
        return verdict
    _stop_or_remove(eng, container, remove=args.remove)
    output.ok("Done.")
    return ExitCode.OK


def _export(container: "engine.Container", *, force: bool, label: str = "") -> None:
    from cai import volumes

    suffix = f" for {container.name}" if label else ""
    output.info(f"Exporting data volume{suffix}...")
    try:
        path = volumes.export_target(volumes.target_of(container), None, use_excludes=True)
        output.ok(f"Exported to: {path}")
        output.out(str(path))
    except CaiError as exc:
        output.error(exc.message)
        for line in exc.extra:
            output.plain_err(line)
        if not force:
            raise CaiError(ExitCode.ERROR, f"Export failed{suffix}. Use --force to stop anyway.") from exc
        output.warn(f"Export failed{suffix}, continuing due to --force")


def _stop_or_remove(eng: "engine.Engine", container: "engine.Container", *, remove: bool) -> None:
    from cai import containers, engine

    if remove:
        output.info(f"Removing: {container.name} [context: {eng.context}]")
        containers.remove(eng, container)
    else:
        output.info(f"Stopping: {container.name} [context: {eng.context}]")
        engine.stop_container(eng, container)


# --- the list (--all, or the picker) ---------------------------------------------------------


class Row:
    """One listed container. `status` is Docker's human text: "Up 5 minutes", "Exited (0) …"."""

    __slots__ = ("engine", "id", "name", "status")

    def __init__(self, engine: "engine.Engine", id: str, name: str, status: str) -> None:  # noqa: A002
        self.engine, self.id, self.name, self.status = engine, id, name, status


def _rows(ctx: Ctx, cwd: str) -> tuple[list[Row], str]:
    """Our containers in every candidate context, each once (by id), sorted by name per context."""
    from pathlib import Path

    from cai import labels, listing, resolution

    resolved = resolution.context_here(ctx.context, Path(cwd))
    rows: list[Row] = []
    seen: set[str] = set()
    for eng, listed in listing.managed_in(resolution.candidate_contexts(ctx.context, Path(cwd))):
        found = {}
        for item in listed:
            item_labels = item.get("Labels") or {}
            # Bulk stops take only what cai labelled (the strict rule): never an unlabelled
            # containai:* container, and never cai's own export/import helpers.
            if item["Id"] in seen or not labels.is_managed(item_labels) or labels.label(item_labels, labels.HELPER):
                continue
            found[item["Id"]] = Row(eng, item["Id"], item["Names"][0].lstrip("/"), item.get("Status", ""))
        seen.update(found)
        rows += sorted(found.values(), key=lambda r: r.name)
    return rows, resolved


def _where(row: Row, resolved: str) -> str:
    """Rows of the resolved context go unmarked, as the original's current-context rows did."""
    return f" [context: {row.engine.context}]" if row.engine.context != resolved else ""


def _row_label(row: Row, resolved: str) -> str:
    return f"{row.name} ({row.status}){_where(row, resolved)}"


def _stop_listed(args: argparse.Namespace, ctx: Ctx, cwd: str) -> int:
    rows, resolved = _rows(ctx, cwd)
    if not rows:
        output.out("No ContainAI containers found.")
        return ExitCode.OK
    output.out("ContainAI containers:")
    output.out()
    for number, row in enumerate(rows, 1):
        output.out(f"  {number}) {_row_label(row, resolved)}")
    if args.all:
        return _stop_all(args, rows, resolved)
    if not output.isatty():
        output.plain_err()
        raise CaiError(ExitCode.ERROR, "Non-interactive terminal detected.",
                       "Use --all flag to stop all containers without prompting:", "  cai stop --all")
    from cai import prompts

    output.out()
    verb = "remove" if args.remove else "stop"
    chosen = prompts.checkbox(f"Select containers to {verb}:", [(_row_label(r, resolved), r) for r in rows])
    if chosen is None:
        output.plain_err("Cancelled.")
        return ExitCode.OK
    if not chosen:
        output.out("No containers selected.")
        return ExitCode.OK
    from cai import session_guard

    for row in chosen:
        container = row.engine.inspect_container(row.id)
        if container is None:
            output.warn(f"Container {row.name} is gone")
            continue
        if args.export:
            _export(container, force=args.force, label=row.name)
        if session_guard.verdict(row.engine, container, force=args.force, interactive=True) is not None:
            continue
        output.out(f"{'Removing' if args.remove else 'Stopping'}: {row.name}")
        _stop_or_remove(row.engine, container, remove=args.remove)
    output.out("Done.")
    return ExitCode.OK


def _stop_all(args: argparse.Namespace, rows: list[Row], resolved: str) -> int:
    """Every row, without asking: those with sessions are skipped (unless --force) and reported."""
    from cai import session_guard, sessions

    output.out()
    output.out("Removing all containers (--all --remove flags)..." if args.remove else "Stopping all containers (--all flag)...")
    skipped: list[str] = []
    failed: list[str] = []
    for row in rows:
        where = _where(row, resolved)
        container = row.engine.inspect_container(row.id)
        if container is None:
            continue
        if container.status == "paused" and not args.remove:  # frozen on purpose, as gc leaves it
            output.out(f"Skipping: {row.name}{where} (paused; cai unpause --container {row.name} first)")
            continue
        if not args.force and container.running:
            found = session_guard.detect(row.engine, container)
            if found.state is sessions.State.HAS:
                output.out(f"Skipping: {row.name}{where} (active sessions: {session_guard.summary(found)})")
                skipped.append(row.name)
                continue
        output.out(f"{'Removing' if args.remove else 'Stopping'}: {row.name}{where}")
        try:
            _stop_or_remove(row.engine, container, remove=args.remove)
        except CaiError as exc:
            output.warn(exc.message)
            failed.append(row.name)
    output.out("Done.")
    if skipped:
        output.error(f"Skipped {len(skipped)} container(s) with active sessions: {' '.join(skipped)}")
        output.plain_err("Use --force to stop them anyway: cai stop --all --force")
    if failed:
        output.error(f"Failed to {'remove' if args.remove else 'stop'}: {' '.join(failed)}")
    return ExitCode.ERROR if skipped or failed else ExitCode.OK
