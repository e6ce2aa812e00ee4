"""`cai port`: the container's published ports, `22/tcp -> 127.0.0.1:2345`."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

DESCRIPTION = ("Show the workspace container's published ports as `22/tcp -> 127.0.0.1:2345`. A running "
               "container shows what the engine bound; a stopped one what it will bind when it starts.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema_version 1)")


def published(inspected: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(container port, host address, host port) rows, by container port: what a running container
    has bound, else its configured bindings."""
    running = ((inspected.get("State") or {}).get("Status")) == "running"
    ports = ((inspected.get("NetworkSettings") or {}).get("Ports") if running else None) \
        or (inspected.get("HostConfig") or {}).get("PortBindings") or {}
    rows = []
    for container_port, bindings in sorted(ports.items()):
        for binding in bindings or ():
            host_port = str(binding.get("HostPort") or "")
            rows.append({"container_port": container_port, "host_ip": binding.get("HostIp") or "0.0.0.0",
                         "host_port": int(host_port) if host_port.isdigit() else None})
    return rows


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import output

    eng, container = existing_container(args, ctx)
    rows = published(eng.inspect_raw(container.id) or {})
    if args.json:
        output.emit_json({"container": container.name, "context": eng.context, "ports": rows})
        return ExitCode.OK
    for row in rows:
        output.out(f"{row['container_port']} -> {row['host_ip']}:{row['host_port'] if row['host_port'] is not None else ''}")
    return ExitCode.OK
