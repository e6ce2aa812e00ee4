"""`cai run [PATH] [options] [-- CMD…]`: create or start the workspace container and run CMD in it."""

from __future__ import annotations

import argparse

from cai.commands import Ctx
from cai.commands._target import add_target_flags, resolve_and_prepare, split_remainder, workspace_choice
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Create (or start) the workspace container with sshd, the workspace mounted at "
               "/home/agent/workspace and a pinned host key. With `-- CMD`, run CMD in it. Without, report "
               "how to reach it (`cai shell`, `ssh NAME`).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_flags(parser)
    parser.add_argument("-d", "--detached", action="store_true", help="start CMD in a detached session (cai session) and print its name")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved plan and change nothing")
    created = parser.add_argument_group("a new container")
    created.add_argument("--label", metavar="KEY=VALUE", action="append", default=[],
                         help="a label of your own (repeatable; containai.* keys are cai's)")
    created.add_argument("-e", "--env", metavar="NAME=VALUE", action="append", default=[],
                         help="set in the agent's login environment and kept in a label (repeatable)")
    created.add_argument("--restart", metavar="POLICY", help="the engine's restart policy: no, on-failure[:N], unless-stopped, always")
    parser.add_argument("rest", nargs=argparse.REMAINDER, metavar="[PATH] [-- CMD ...]", help="workspace directory, then the command after --")
    parser.set_defaults(_run_parser=parser)


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import containers, output, ssh

    path, command = split_remainder(args, args._run_parser, "Use 'cai run --help' for usage")
    # Global flags after PATH (`cai run ~/p --context X -- make`) were parsed only now.
    ctx = Ctx(args.context, args.debug, ctx.passthrough)
    output.configure(verbose=args.verbose, quiet=args.quiet)
    workspace = workspace_choice(path, args.workspace)
    from cai import run_options

    args.run_options = run_options.RunOptions(run_options.parse_labels(args.label), run_options.parse_environment(args.env),
                                              run_options.parse_restart(args.restart))
    if args.detached and not command:
        raise CaiError(ExitCode.ERROR, "--detached needs a command after --")
    if args.dry_run:
        return _dry_run(args, ctx, workspace, command)
    target, container = resolve_and_prepare(args, ctx.context, create_missing_named=True, workspace=workspace)
    if not command:
        output.out(container.name)
        output.info(f"Container {container.name} is running. Reach it with: cai shell, or ssh {container.name}")
        return 0
    if args.detached:
        from cai import agent_sessions

        name = agent_sessions.start(target.engine, container, command, name=None, workdir=None, environment={}, log=False)
        output.out(name)
        output.info(f"Command started in session {name}: cai attach {name}, cai session wait {name}")
        return 0
    tty = "-t" if output.isatty() else None  # a PTY only when stdin and stdout are both terminals
    return containers.connect(target.engine, container, ssh.remote_exec_command(command), tty=tty)


def _dry_run(args: argparse.Namespace, ctx: Ctx, workspace: str | None, command: list[str]) -> int:
    from cai import containers, engine, labels, output, resolution, ssh

    target = resolution.resolve(explicit_context=ctx.context, workspace_arg=workspace, container_arg=args.container,
                                volume_arg=args.data_volume, create_missing_named=True)
    existing = target.container
    remote_path = containers.remote_path_choice(target.engine, args.remote_path, None if args.fresh else existing)
    state = existing.status if existing else "none"
    if existing is None or args.fresh:
        action, port = "create", str(containers.allocate_port(target.engine))
    else:
        action = "attach" if existing.running else "start"
        port = labels.label(existing.labels, labels.SSH_PORT) or "<unknown>"
    if existing is not None and not args.fresh and existing.workspace_mount:
        workspace_source = existing.workspace_mount["source"]
    elif remote_path is not None or not engine.is_remote(target.engine):
        workspace_source = remote_path or str(target.workspace)
    else:
        workspace_source = containers.workspace_volume_name(target.name)  # holding an uploaded copy
    plan = [
        ("CONTAINER_NAME", target.name), ("CONTAINER_STATE", state), ("WORKSPACE", str(target.workspace)),
        ("DATA_VOLUME", target.volume), ("IMAGE", existing.image if existing and not args.fresh else args.image or labels.DEFAULT_IMAGE),
        ("DOCKER_CONTEXT", target.engine.context), ("SSH_PORT", port),
        ("MOUNT_WORKSPACE", f"{workspace_source}:{ssh.WORKDIR}"), ("MOUNT_DATA", f"{target.volume}:/mnt/agent-data"),
        ("SSH_COMMAND", f"ssh {target.name}"), ("SSH_COMMAND_DIRECT", f"ssh -p {port} agent@{ssh.HOST}"),
        ("ACTION", action), ("MODE", "detached" if args.detached else "run"),
        ("COMMAND", " ".join(command)),
    ]
    for key, value in plan:
        output.out(f"{key}={value}")
    return 0
