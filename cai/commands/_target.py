"""Flags shared by run, exec and shell: which workspace or container, and how to create it."""

from __future__ import annotations

import argparse
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from cai import labels
from cai.errors import CaiError, ExitCode


def add_container_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("target")
    group.add_argument("-w", "--workspace", metavar="PATH", help="workspace directory (default: current directory)")
    group.add_argument("--container", metavar="NAME", help="use this container instead of the workspace's")
    return group


def existing_container(args: argparse.Namespace, ctx: Any) -> tuple[Any, Any]:
    """(engine, container) for a verb that acts on a container that exists: --container NAME,
    -w PATH or the current directory's. Missing is 10, another tool's container 15, as for exec."""
    from cai import output, resolution

    target = resolution.resolve(explicit_context=ctx.context, workspace_arg=args.workspace,
                                container_arg=args.container, volume_arg=None, create_missing_named=False)
    if target.container is None:
        raise CaiError(ExitCode.CONTAINER_NOT_FOUND, f"No container for workspace: {output.shown(str(target.workspace))}",
                       "Create one with: cai run")
    return target.engine, target.container


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    group = add_container_flags(parser)
    group.add_argument("--data-volume", metavar="VOLUME", help="data volume for a new container")
    group.add_argument("--fresh", action="store_true", help="remove and recreate the container")
    # None means "not given": only then may `cai exec` skip the engine (see reach.py).
    group.add_argument("--image", metavar="IMAGE", help=f"image for a new container (default: {labels.DEFAULT_IMAGE})")
    group.add_argument("--memory", metavar="SIZE", help=f"memory limit (default: {labels.DEFAULT_MEMORY})")
    group.add_argument("--cpus", metavar="N", type=_cpus, help=f"CPU limit (default: {labels.DEFAULT_CPUS:g})")
    group.add_argument("--remote-path", metavar="PATH",
                       help="on a remote engine: bind this existing directory of the engine host as the workspace "
                       "(default: upload a copy of the local workspace)")


def creation_flags_given(args: argparse.Namespace) -> bool:
    return args.fresh or any(value is not None for value in (args.data_volume, args.image, args.memory, args.cpus,
                                                             args.remote_path))


def _cpus(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --cpus value: {value!r}") from None
    if not 0 < number <= 1024:
        raise argparse.ArgumentTypeError(f"invalid --cpus value: {value!r}")
    return number


def split_remainder(args: argparse.Namespace, parser: argparse.ArgumentParser, hint: str) -> tuple[str | None, list[str]]:
    """`[FIRST] [OPTIONS] [-- CMD ...]` from a REMAINDER (`args.rest`) that argparse starts at
    FIRST, so options after FIRST (`cai run . -d -- make`) are parsed here, into `args`."""
    from cai.output import shown

    rest = list(args.rest)
    if not rest:
        return None, []
    if rest[0] == "--":
        return None, rest[1:]
    first, tail = rest[0], rest[1:]
    cut = tail.index("--") if "--" in tail else len(tail)
    flags, command = tail[:cut], tail[cut + 1:]
    if flags:
        args.rest = []
        parser.parse_args(flags, namespace=args)
        if args.rest:
            raise CaiError(ExitCode.ERROR, f"Unexpected argument: {shown(args.rest[0])}", hint)
    return first, command


def check_workdir(workdir: str | None) -> None:
    """`--workdir` as exec and session new take it: given, it must be a printable path."""
    if workdir is not None and (not workdir or not workdir.isprintable()):
        from cai.output import shown

        raise CaiError(ExitCode.ERROR, f"Invalid --workdir value: {shown(workdir)}")


def workspace_choice(path: str | None, flag: str | None) -> str | None:
    """The workspace from a positional PATH or --workspace, given at most once."""
    if path is not None and flag is not None:
        raise CaiError(ExitCode.ERROR, "Give the workspace once: PATH or --workspace")
    return path if path is not None else flag


def resolve_and_prepare(args: argparse.Namespace, explicit_context: str | None, *, create_missing_named: bool, workspace: str | None) -> Any:
    from cai import resolution

    target = resolution.resolve(
        explicit_context=explicit_context, workspace_arg=workspace, container_arg=args.container,
        volume_arg=args.data_volume, create_missing_named=create_missing_named,
    )
    return target, prepare(args, target)


def prepare(args: argparse.Namespace, target: Any) -> Any:
    """The resolved target's container, created or started as the creation flags say."""
    from cai import containers

    return containers.prepare(
        target, image=args.image or labels.DEFAULT_IMAGE, memory=args.memory or labels.DEFAULT_MEMORY,
        cpus=args.cpus if args.cpus is not None else labels.DEFAULT_CPUS, fresh=args.fresh,
        remote_path=args.remote_path, options=getattr(args, "run_options", None),
    )
