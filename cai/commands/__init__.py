"""The commands: their names and summaries, the context each is handed, and the argparse tree.

One module per command, importing nothing heavy, declares:
- DESCRIPTION, its `--help` text (and EPILOG, when it has one);
- add_arguments(parser), its own flags, when it has any;
- run(args, ctx) -> int;
- optionally PASSTHROUGH (the words after it go to another program, unparsed), OWN_SHORT_FLAGS
  (global short flags it takes for itself) and json_promised(args) (see main).
They import Ctx from here at run time: this package is loaded before any of them.
"""

from __future__ import annotations

import sys

from cai import __version__
from cai.argparsing import CaiParser, add_global_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import ModuleType

# Each command, in the order `cai --help` lists it, with its one-line summary: the top-level help
# shows them without importing a command module, and each command's own parser has the same.
SUMMARIES = {
    "run": "create or start the workspace container, then run a command in it",
    "exec": "run a command in the workspace container",
    "shell": "open a login shell in the workspace container",
    "session": "agent sessions that outlive the client: new, ls, logs, send, wait, kill, prune",
    "attach": "attach this terminal to a session (detach: Ctrl-b d)",
    "cp": "copy files between here and a container",
    "stop": "stop workspace containers (checks for active sessions first)",
    "status": "show a container's state, uptime, sessions and resource use",
    "ps": "list cai's containers (running ones unless -a)",
    "logs": "show the container's log",
    "kill": "send a signal to the container (KILL by default)",
    "restart": "stop and start the container again",
    "wait": "wait until the container stops, then exit with its exit code",
    "port": "show the container's published ports",
    "inspect": "show the engine's inspect document and cai's own view",
    "top": "list the container's processes",
    "pause": "freeze the container's processes",
    "unpause": "thaw a paused container",
    "rename": "rename the container (ssh NAME, state and caches follow)",
    "gc": "remove stale cai containers (and unused cai images)",
    "export": "export the data volume to a .tgz file",
    "import": "restore the data volume from an export",
    "ssh": "manage SSH client state",
    "ssh-config": "print self-contained ssh_config Host blocks for other SSH tools",
    "image": "build the agent image",
    "doctor": "check the engine, the SSH tools and the agent image",
    "docker": "run docker against cai's engine context",
    "completion": "print the bash or zsh completion script",
}
COMMANDS = tuple(SUMMARIES)


class Ctx:
    """Resolved global state, built once after parsing."""

    __slots__ = ("context", "debug", "passthrough")

    def __init__(self, context: str | None, debug: bool, passthrough: tuple[str, ...] = ()) -> None:
        self.context, self.debug, self.passthrough = context, debug, passthrough


def command_module(name: str) -> ModuleType:
    module = "import_" if name == "import" else name.replace("-", "_")  # `import` lives in import_.py
    full = f"cai.commands.{module}"
    __import__(full)
    return sys.modules[full]


def build_parser(only: str | None = None, *, full: bool = True) -> CaiParser:
    """The whole tree (`full`, for completion and the docs' tests); or, for a call, `only` the
    named command built (one command module imported), or with no command word every command as
    a name and summary (none imported)."""
    parser = CaiParser(
        prog="cai",
        description="Give every workspace its own Docker container for an AI agent, reached over SSH.",
    )
    parser.add_argument("--version", action="version", version=f"cai {__version__}")
    add_global_flags(parser, on_subcommand=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=CaiParser)
    for name in COMMANDS:
        if only is not None and name != only:
            continue  # the command word was `only`: no other subparser is ever reached
        if only is None and not full:  # top-level help or an error: names and summaries only
            subparsers.add_parser(name, help=SUMMARIES[name], add_help=False)
            continue
        _add_command(subparsers, name)
    return parser


def _add_command(subparsers: argparse._SubParsersAction, name: str) -> None:
    """Command `name`'s parser, made from what its module declares."""
    module = command_module(name)
    passthrough = getattr(module, "PASSTHROUGH", False)
    # A pass-through command's words, -h included, are its program's.
    sub = subparsers.add_parser(name, help=SUMMARIES[name], description=module.DESCRIPTION,
                                epilog=getattr(module, "EPILOG", None), add_help=not passthrough)
    add_arguments = getattr(module, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(sub)
    if not passthrough:
        add_global_flags(sub, on_subcommand=True, taken=getattr(module, "OWN_SHORT_FLAGS", ()))
    sub.set_defaults(_module=name)
