"""`cai docker ARGS…`: docker, pinned to cai's context, with `-u agent` for exec into our containers."""

from __future__ import annotations

import os
import sys

from cai.commands import Ctx

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Sequence

DESCRIPTION = ("Run `docker --context <cai's context> ARGS…` and return docker's exit code. "
               "`cai docker exec` into a cai container runs as user agent unless -u is given.")

# argv after the command word goes to docker untouched; argparse never sees it.
PASSTHROUGH = True

# `docker exec` options that take a separate value, so the value is not the container.
_EXEC_VALUE_OPTIONS = {"-e", "--env", "--env-file", "-w", "--workdir", "--detach-keys"}
_EXEC_USER_OPTIONS = {"-u", "--user"}


def exec_container_token(args: Sequence[str]) -> int | None:
    """Index of the container name in `docker exec …` args, or None when -u/--user is given
    or there is no container."""
    if not args or args[0] != "exec":
        return None
    i = 1
    while i < len(args):
        token = args[i]
        if token == "--":
            return i + 1 if i + 1 < len(args) else None
        if token in _EXEC_USER_OPTIONS or token.startswith(("--user=", "-u")):
            return None
        if token in _EXEC_VALUE_OPTIONS:
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        return i
    return None


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import engine, labels, resolution
    from cai.errors import CaiError

    docker_args = list(ctx.passthrough)
    docker = engine.require_docker_cli()
    if any(a == "--context" or a.startswith("--context=") for a in docker_args):
        argv = [docker, *docker_args]
    else:
        context = resolution.context_here(ctx.context)
        token = exec_container_token(docker_args)
        if token is not None:
            try:
                found = engine.Engine(context).inspect_container(docker_args[token])
            except CaiError:
                found = None  # docker itself will say what is wrong
            if found is not None and labels.is_workspace_container(found.labels):
                docker_args[1:1] = ["-u", "agent"]
        argv = [docker, "--context", context, *docker_args]
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    sys.stdout.flush()
    sys.stderr.flush()
    # Interactive pass-through: docker owns the terminal and its exit code becomes ours.
    os.execve(docker, argv, env)
    return 1  # not reached
