"""`cai ssh cleanup`: drop the SSH client config and pinned host keys of containers that are gone."""

from __future__ import annotations

from cai import output
from cai.commands import Ctx

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from pathlib import Path

DESCRIPTION = "Manage cai's SSH client state."

_MARKER = "# ContainAI SSH config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="ssh_action", metavar="ACTION", title="actions", required=True)
    cleanup = actions.add_parser(
        "cleanup",
        help="remove SSH configs and host keys of containers that no longer exist",
        description="Remove ~/.ssh/containai.d/NAME.conf and the pinned host keys of every container that exists in "
        "no reachable Docker context. Aborts when no context answers, so nothing is removed blindly.",
    )
    cleanup.add_argument("--dry-run", action="store_true", help="show what would be removed, change nothing")
    cleanup.add_argument("--json", action="store_true", help="print the result as JSON")


class HostEntry:
    __slots__ = ("name", "path", "port", "alias")

    def __init__(self, name: str, path: "Path", port: int | None, alias: str | None) -> None:
        self.name, self.path, self.port, self.alias = name, path, port, alias


def host_entries(conf_dir: Path, key_path: Path) -> list[HostEntry]:
    """Our `NAME.conf` files: written by cai (marker line) or pointing at cai's key."""
    from cai import ssh

    entries: list[HostEntry] = []
    for path in sorted(conf_dir.glob("*.conf")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        first = text.split("\n", 1)[0]
        if _MARKER not in first and str(key_path) not in text:
            continue
        entries.append(HostEntry(path.stem, path, ssh.configured_port(text), ssh.configured_alias(text)))
    return entries


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import engine, resolution, ssh
    from cai.errors import CaiError, ExitCode

    entries = host_entries(ssh.host_config_dir(), ssh.key_path())
    engines: list[engine.Engine] = []
    why = "unknown"
    for name in resolution.candidate_contexts(ctx.context, None):
        candidate = engine.Engine(name)
        try:
            candidate.info()
        except engine.EngineUnavailable as exc:
            output.warn(f"Context '{name}' is not reachable: {exc.message}")
            why = exc.kind
            continue
        engines.append(candidate)
    if not engines:
        refusal = CaiError(ExitCode.ERROR, "No Docker daemon is reachable",
                           "[ERROR] Cannot verify container existence - aborting cleanup to prevent data loss")
        refusal.kind = why  # type: ignore[attr-defined]  # the JSON error's class, as the engine's own failures
        raise refusal

    def exists(entry: HostEntry, eng: "engine.Engine") -> bool:
        found = eng.inspect_container(entry.name)
        return found is not None and entry.alias in (None, ssh.host_key_alias(eng.context, found.id))

    stale = [e for e in entries if not any(exists(e, eng) for eng in engines)]
    for entry in stale:
        if args.dry_run:
            pass
        elif entry.alias is not None:
            ssh.forget_container(entry.name, entry.alias)
        else:
            ssh.remove_host_config(entry.name)
        if not args.json:
            verb = "Would remove" if args.dry_run else "Removed"
            port = f" (port {entry.port})" if entry.port is not None else ""
            output.out(f"{verb}: {entry.name}{port}")
    if args.json:
        output.emit_json({
            "dry_run": args.dry_run,
            "contexts": [eng.context for eng in engines],
            "removed": [{"name": e.name, "port": e.port} for e in stale],
            "kept": [e.name for e in entries if e not in stale],
        })
    elif not stale:
        output.out("Nothing to clean up")
    return ExitCode.OK
