"""`cai rename NEW`: rename the container and everything cai keys by its name.

The engine's rename, then: the workspace's saved container name, `~/.ssh/containai.d/NAME.conf`
(so `ssh NEW` works and `ssh OLD` no longer does), the exec fast path's cache and the completion
cache. Pins and control sockets are keyed by context and container id, so they carry over as they
are. The hostname inside stays the old one: Docker cannot change it without a new container.
"""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_container_flags, existing_container
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DESCRIPTION = ("Rename the workspace container to NEW. `ssh NEW`, the workspace's state and cai's caches "
               "follow; a name that any known context has taken is refused.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_flags(parser)
    parser.add_argument("new_name", metavar="NEW", help="the new name")


def _taken_elsewhere(new_name: str) -> list[str]:
    """Contexts whose engine has a container named `new_name`; unreachable ones are warned about."""
    from cai import all_contexts

    def taken(eng: Any) -> bool:  # inspect also takes an id's prefix: only the very name counts
        found = eng.inspect_raw(new_name)
        return found is not None and found.get("Name") == f"/{new_name}"

    answered, unreachable = all_contexts.fan_out(taken)
    all_contexts.warn_unreachable(unreachable)
    return [context for context, taken in answered if taken]


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import config, containers, labels, output, reach, ssh, userfiles

    new_name = labels.validate_container_name(args.new_name)  # before any engine call
    eng, container = existing_container(args, ctx)
    if new_name == container.name:
        return ExitCode.OK
    alias = ssh.host_key_alias(container.context, container.id)
    taken = _taken_elsewhere(new_name)
    if taken:
        raise CaiError(ExitCode.ERROR, f"Container name {new_name} is taken (context: {', '.join(taken)})",
                       "[HINT] Choose another name: ssh NAME, NAME.conf and completion need it to be unique")
    other = ssh.host_config_alias(new_name)
    if other is not None and other != alias:
        raise CaiError(ExitCode.ERROR, f"~/.ssh/containai.d/{new_name}.conf belongs to another container ({other})",
                       "[HINT] Remove that container, or run: cai ssh cleanup")
    from cai import engine

    ssh.release_master(containers.endpoint(container))
    engine.rename_container(eng, container.id, new_name)
    renamed = eng.inspect_container(container.id)
    if renamed is None:
        raise CaiError(ExitCode.CONTAINER_NOT_FOUND, f"Container {new_name} vanished after the rename")
    workspace = labels.label(renamed.labels, labels.WORKSPACE)
    if workspace and config.workspace_state(workspace).get("container_name") == container.name:
        config.save_workspace_state(workspace, container_name=new_name)
    if ssh.host_config_alias(container.name) == alias:
        ssh.remove_host_config(container.name)
        ssh.write_host_config(containers.endpoint(renamed))
    reach.forget_alias(alias)
    for cached in userfiles.cache_dir().glob("complete-containers-*"):
        cached.unlink(missing_ok=True)
    output.ok(f"Renamed {container.name} to {new_name}")
    return ExitCode.OK
