"""`cai ssh-config [NAME...|--all]`: the `Host` blocks of containers, for tools that do not follow
the `Include` line cai adds to ~/.ssh/config (paramiko, Fabric, pyinfra, IDEs), as `vagrant
ssh-config` and `limactl show-ssh` do.

A block is printed only for a container whose NAME.conf is its own (the alias of its context and
id): its host keys are pinned, so the block's StrictHostKeyChecking can pass. The block is what
NAME.conf holds, rendered by the same function (ssh.host_block) from the engine's view of it.
"""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cai import engine

DESCRIPTION = ("Print self-contained ssh_config `Host` blocks: absolute paths, no Include, and a remote engine's "
               "ProxyJump or ProxyCommand, for tools that do not read ~/.ssh/containai.d (paramiko, Fabric, IDEs). "
               "Without NAME, the workspace's container; with --all, every cai container that has an SSH config "
               "on this machine. Append the output to a config file, or point the tool at a file of it.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="these containers (default: the workspace's)")
    parser.add_argument("--all", action="store_true", help="every cai container with an SSH config on this machine")
    parser.add_argument("-w", "--workspace", metavar="PATH", help="workspace directory (default: current directory)")
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema_version 1)")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import labels, output

    names, everything, workspace = list(dict.fromkeys(args.names)), args.all, args.workspace
    if everything and names:
        raise CaiError(ExitCode.ERROR, "NAME and --all are mutually exclusive")
    if workspace is not None and (names or everything):
        raise CaiError(ExitCode.ERROR, f"{'--all' if everything else 'NAME'} and --workspace are mutually exclusive")
    for name in names:
        labels.validate_container_name(name)
    if everything:
        found = _with_config(ctx)
    elif names:
        found = [_configured(_existing(ctx, None, name)) for name in names]
    else:
        found = [_configured(_existing(ctx, workspace, None))]
    hosts = [_host(container) for container in found]
    for container in found:
        if not container.running:
            output.warn(f"Container {container.name} is {container.status or 'not running'}: "
                        "ssh reaches it once it runs (cai run --no-agent starts it)")
    if args.json:
        output.emit_json({"hosts": hosts})
    elif hosts:  # blank lines between blocks; nothing at all on stdout when there is none
        output.out("\n".join(host["config"] for host in hosts).rstrip("\n"))
    return ExitCode.OK


def _existing(ctx: Ctx, workspace: str | None, name: str | None) -> engine.Container:
    """As port and inspect find theirs: missing is 10, another tool's container 15."""
    from cai.commands._target import existing_container

    _, container = existing_container(argparse.Namespace(workspace=workspace, container=name), ctx)
    return container


def _has_config(name: str, context: str, container_id: str) -> bool:
    """NAME.conf belongs to this very container: the same name on another engine, or a container
    recreated since, has other pins."""
    from cai import ssh

    return ssh.host_config_alias(name) == ssh.host_key_alias(context, container_id)


def _configured(container: engine.Container) -> engine.Container:
    if not _has_config(container.name, container.context, container.id):
        raise CaiError(ExitCode.ERROR, f"Container {container.name} has no SSH config on this machine yet",
                       f"[HINT] cai sets it up on the first connection: cai exec --container {container.name} -- true")
    return container


def _with_config(ctx: Ctx) -> list[engine.Container]:
    """cai's containers in every candidate context whose NAME.conf is their own, each once, by
    name within a context. A context that does not answer is skipped; all of them failing is its error."""
    import os
    from pathlib import Path

    from cai import listing, resolution

    found: list[engine.Container] = []
    seen: set[str] = set()
    for eng, listed in listing.managed_in(resolution.candidate_contexts(ctx.context, Path(os.getcwd()))):
        mine = [item for item in listed if item["Id"] not in seen
                and _has_config(item["Names"][0].lstrip("/"), eng.context, item["Id"])]
        for item in sorted(mine, key=lambda item: item["Names"][0]):
            container = eng.inspect_container(item["Id"])
            if container is not None:  # removed since the listing
                seen.add(item["Id"])
                found.append(container)
    return found


def _host(container: engine.Container) -> dict[str, object]:
    """One container's block (`config`, as NAME.conf has it) and what it says, field by field."""
    from cai import containers, ssh

    endpoint = containers.endpoint(container)
    return {
        "name": container.name,
        "context": container.context,
        "host_name": ssh.HOST,
        "port": endpoint.port,
        "user": ssh.USER,
        "identity_file": str(ssh.key_path()),
        "known_hosts_file": str(ssh.known_hosts_path()),
        "host_key_alias": endpoint.alias,
        "proxy_jump": endpoint.jump,
        "proxy_command": ssh.proxy_command(endpoint, keep_stderr=True) if endpoint.bridge else None,
        "config": "\n".join(ssh.host_block(endpoint)) + "\n",
    }
