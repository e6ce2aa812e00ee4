"""`cai inspect [--format TEMPLATE]`: the engine's inspect document, plus what cai knows of it."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cai import engine

DESCRIPTION = ("Print the engine's inspect document of the workspace container with a `cai` object added: "
               "workspace, data volume, SSH port, context, host-key pins and sessions. With --format, print one "
               "template per container, e.g. '{{.State.Status}}' or '{{json .cai.sessions}}' (docs/cli-reference.md).")

JSON_SCHEMA_VERSION = 2  # as cai status --json: numbers beside the text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("-f", "--format", metavar="TEMPLATE", help="a Go-like template: {{.A.B}}, {{json .A}}, {{.}}")


def pin_state(pinned: list[str], shown: list[str]) -> str:
    """`pinned` (cai's known_hosts has exactly the keys the engine shows), `stale` (other keys:
    the next session pins again), `none`, or `unknown` (the engine showed no keys)."""
    if not pinned:
        return "none"
    if not shown:
        return "unknown"
    return "pinned" if sorted(pinned) == sorted(shown) else "stale"


def cai_block(eng: "engine.Engine", container: "engine.Container") -> dict[str, Any]:
    from cai import containers, labels, sessions, ssh

    alias = ssh.host_key_alias(container.context, container.id)
    block: dict[str, Any] = {
        "context": eng.context,
        "workspace": containers.workspace_report(container.labels, container.workspace_mount),
        "data_volume": labels.label(container.labels, labels.DATA_VOLUME) or None,
        "ssh_port": labels.ssh_port(container.labels),
        "host_key_alias": alias,
        "pins": pin_state(ssh.pinned_keys(alias), containers.engine_host_keys(eng, container.id)),
        "ssh_config": str(ssh.host_config_dir() / f"{container.name}.conf")
        if ssh.host_config_alias(container.name) == alias else None,
    }
    if container.running:
        from datetime import datetime, timezone

        from cai import clock

        block["uptime_seconds"] = clock.seconds_since(container.started_at, datetime.now(timezone.utc))
        found = sessions.detect(eng, container)
        block["sessions"] = found.as_json()
    return block


def json_promised(args: argparse.Namespace) -> int | None:
    return JSON_SCHEMA_VERSION if args.format is None else None  # a template prints what it says


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import output, templates

    template = templates.Template(args.format) if args.format is not None else None  # before any engine call
    eng, container = existing_container(args, ctx)
    document = {"schema_version": JSON_SCHEMA_VERSION, **(eng.inspect_raw(container.id) or {}),
                "cai": cai_block(eng, container)}  # schema_version for templates too
    if template is not None:
        output.out(template.render(document))
    else:
        output.emit_json(document, schema_version=JSON_SCHEMA_VERSION)
    return ExitCode.OK
