"""One resolution pass: the arguments, the environment and the config, read once into a frozen
target (workspace, config layers, context, container name, volume).

Commands resolve here first; containers, volumes, engine and ssh then take the target and never
resolve any of it again. The rules are the original's (reference ssh-exec §2.3): standard mode
finds the workspace's container, --container mode takes the container named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cai import config, contexts, engine, labels
from cai.errors import CaiError, ExitCode


@dataclass(frozen=True)
class Target:
    engine: engine.Engine
    name: str
    workspace: Path
    volume: str
    container: engine.Container | None
    layers: config.Layers


def resolve(*, explicit_context: str | None, workspace_arg: str | None, container_arg: str | None,
            volume_arg: str | None, create_missing_named: bool) -> Target:
    # The names first, from the arguments alone: which workspace, and which names to look for.
    if container_arg is not None:
        labels.validate_container_name(container_arg)
        if workspace_arg is not None:
            raise CaiError(ExitCode.ERROR, "--container and --workspace are mutually exclusive")
        if volume_arg is not None:
            raise CaiError(ExitCode.ERROR, "--container and --data-volume are mutually exclusive")
    workspace = labels.resolve_workspace(workspace_arg)
    by_name = (container_arg,) if container_arg is not None else \
        (labels.container_name_for(workspace), labels.legacy_container_name(str(workspace)))
    # Then the config, read once, and the context it names.
    layers = config.Layers(workspace)
    eng = engine.Engine(contexts.resolve(explicit_context, layers))
    # Then what the engine holds under those names.
    if container_arg is not None:
        return _named(eng, container_arg, workspace, layers, create_missing_named)
    volume = layers.volume(volume_arg)
    found = _by_workspace(eng, workspace, layers, by_name)
    if found is not None:
        check_ours(found)
        return Target(eng, found.name, workspace, volume, found, layers)
    name = labels.resolve_new_name(by_name[0], str(workspace), lambda n: _workspace_of(eng, n))
    return Target(eng, name, workspace, volume, None, layers)


def _named(eng: engine.Engine, name: str, workspace: Path, layers: config.Layers, create_missing: bool) -> Target:
    found = eng.inspect_container(name)
    if found is None:
        if not create_missing:
            raise CaiError(ExitCode.CONTAINER_NOT_FOUND, f"Container not found: {name}",
                           "To create a container for this workspace, run:", f"  cai run --container {name} /path/to/workspace")
        return Target(eng, name, workspace, layers.volume(None), None, layers)
    if not labels.is_workspace_container(found.labels):
        raise CaiError(ExitCode.CONTAINER_FOREIGN, f"Container {found.name} exists but is not managed by ContainAI",
                       "[HINT] Remove the conflicting container or use a different name")
    ws_label = labels.label(found.labels, labels.WORKSPACE)
    vol_label = labels.label(found.labels, labels.DATA_VOLUME) or layers.volume(None)
    return Target(eng, found.name, Path(ws_label) if ws_label else workspace, vol_label, found, layers)


def _by_workspace(eng: engine.Engine, workspace: Path, layers: config.Layers,
                  by_name: tuple[str, ...]) -> engine.Container | None:
    """The saved name, else the one container labelled with the workspace, else by name."""
    ws = str(workspace)
    saved = layers.workspace_state().get("container_name")
    if isinstance(saved, str) and saved:
        found = eng.inspect_container(saved)
        if found is not None and labels.label(found.labels, labels.WORKSPACE) == ws:
            return found
    matches = engine.list_containers(eng, [f"{labels.WORKSPACE}={ws}"])
    if len(matches) > 1:
        names = " ".join(sorted(m["Names"][0].lstrip("/") for m in matches))
        raise CaiError(ExitCode.ERROR, f"Multiple containers found for workspace: {ws}",
                       f"[ERROR] Containers: {names}", "[ERROR] Use --container to specify which one")
    if matches:
        return eng.inspect_container(matches[0]["Id"])
    for name in by_name:
        found = eng.inspect_container(name)
        # By name, only a container with no workspace label (legacy or foreign; the caller rejects a
        # foreign one) may be taken: the original also took another workspace's "ws-nogit".
        if found is not None and labels.label(found.labels, labels.WORKSPACE) in ("", ws):
            return found
    return None


def _workspace_of(eng: engine.Engine, name: str) -> str | None:
    found = eng.inspect_container(name)
    return None if found is None else labels.label(found.labels, labels.WORKSPACE)


def check_ours(container: engine.Container) -> None:
    if not labels.is_workspace_container(container.labels):
        raise CaiError(ExitCode.CONTAINER_FOREIGN, f"Container '{container.name}' was not created by ContainAI",
                       "This is a name collision with a container not managed by ContainAI.",
                       "Use a different workspace path or remove the conflicting container.")


# --- commands that name no workspace's container ---------------------------------------------


def context_here(explicit_context: str | None, workspace: Path | None = None) -> str:
    """The context a command that names no container uses (ps, gc, image, docker, doctor): the one
    `cai run` in `workspace` (default: here) would use."""
    return contexts.resolve(explicit_context, config.Layers(workspace or Path(os.getcwd())))


def candidate_contexts(explicit_context: str | None, workspace: Path | None) -> list[str]:
    """Where a container may live when looked up by name; without a workspace, only the user's
    config names one."""
    return contexts.candidates(explicit_context, config.Layers(workspace))


def find_named(name: str, *, explicit_context: str | None, workspace: Path,
               explicit_config: Path | None = None) -> engine.Container | None:
    """By name across the candidate contexts (the workspace's config decides the first); None when
    none has it. For stop, status, export and import, where "not found" is rc 1 (the original's),
    not exec's 10."""
    try:
        return contexts.find_by_name(name, explicit_context, config.Layers(workspace, explicit_config))
    except CaiError as exc:
        if exc.code == ExitCode.CONTAINER_NOT_FOUND:
            return None
        raise


def require_managed(container: engine.Container) -> None:
    """The strict rule (stop, status, export, import): the label must be exactly `true`."""
    if not labels.is_managed(container.labels):
        raise CaiError(ExitCode.ERROR, f"Container {container.name} exists but is not managed by ContainAI")


def find_managed(name: str, *, explicit_context: str | None, workspace: Path,
                 explicit_config: Path | None = None) -> engine.Container:
    found = find_named(name, explicit_context=explicit_context, workspace=workspace, explicit_config=explicit_config)
    if found is None:
        raise CaiError(ExitCode.ERROR, f"Container not found: {name}")
    require_managed(found)
    return found
