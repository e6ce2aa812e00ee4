"""`cai run [PATH] [options] [-- CMD…]`: create or start the workspace container and run CMD in it."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from cai.commands import Ctx
from cai.commands._target import add_target_flags, prepare, split_remainder, workspace_choice
from cai.errors import CaiError, ExitCode

DESCRIPTION = ("Create (or start) the workspace container with sshd, the workspace mounted at "
               "/home/agent/workspace and a pinned host key. With `-- CMD`, run CMD in it. Without, start the "
               "agent (--agent, else CONTAINAI_AGENT, else [agent] default in the config, else claude) in a "
               "detached session named after it, with its permission prompts off (the container is the "
               "boundary), and attach this terminal to it (Ctrl-b d detaches); without a terminal, or with -d, "
               "print the session's name. A running agent session is attached to, not started again.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_flags(parser)
    parser.add_argument("-d", "--detached", action="store_true",
                        help="start CMD (or the agent) in a detached session (cai session) and print its name")
    agent = parser.add_mutually_exclusive_group()
    agent.add_argument("--agent", metavar="NAME", help="the agent to start when no CMD is given (default: claude)")
    agent.add_argument("--no-agent", action="store_true",
                       help="when no CMD is given, start nothing: print the container's name")
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
    if command and (args.agent is not None or args.no_agent):
        raise CaiError(ExitCode.ERROR, f"{'--agent' if args.agent is not None else '--no-agent'} is for a run without a command",
                       "Use 'cai run --help' for usage")
    if args.detached and args.no_agent:
        raise CaiError(ExitCode.ERROR, "--detached and --no-agent are mutually exclusive")
    if args.dry_run:
        return _dry_run(args, ctx, workspace, command)
    from cai import resolution

    target = resolution.resolve(explicit_context=ctx.context, workspace_arg=workspace, container_arg=args.container,
                                volume_arg=args.data_volume, create_missing_named=True)
    agent = _agent(args, target) if not command else None  # an unknown agent is an error before anything is created
    container = prepare(args, target)
    if agent is not None:
        from cai import agent_launch, config

        config.save_workspace_state(str(target.workspace), agent=agent.name)  # what `cai status` names
        return agent_launch.launch(target.engine, container, agent, attach=output.isatty() and not args.detached)
    if not command:  # --no-agent
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


def _agent(args: argparse.Namespace, target: Any) -> Any:
    from cai import agents

    if args.no_agent:
        return None
    return agents.lookup(agents.default_name(args.agent, target.layers), target.layers)


def _dry_run(args: argparse.Namespace, ctx: Ctx, workspace: str | None, command: list[str]) -> int:
    import shlex

    from cai import containers, engine, labels, output, resolution, ssh

    target = resolution.resolve(explicit_context=ctx.context, workspace_arg=workspace, container_arg=args.container,
                                volume_arg=args.data_volume, create_missing_named=True)
    agent = _agent(args, target) if not command else None
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
        ("COMMAND", " ".join(command) if command or agent is None else shlex.join(agent.argv)),
    ]
    for key, value in plan:
        output.out(f"{key}={value}")
    return 0
