"""The argparse tree, the context handed to commands, and the one place errors become exit codes."""

from __future__ import annotations

import sys

from cai import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Sequence

    from cai.argparsing import CaiParser

# Each command, in the order `cai --help` lists it, with its one-line summary: the top-level help
# shows them without importing a command module (tests/unit/test_cli.py checks them against each
# module's own). Each module has add_parser() and run().
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
    "image": "build the agent image",
    "doctor": "check the engine, the SSH tools and the agent image",
    "docker": "run docker against cai's engine context",
    "completion": "print the bash or zsh completion script",
}
COMMANDS = tuple(SUMMARIES)
_GLOBAL_VALUE_FLAGS = ("--context",)


class Ctx:
    """Resolved global state, built once after parsing."""

    __slots__ = ("context", "debug", "passthrough")

    def __init__(self, context: str | None, debug: bool, passthrough: tuple[str, ...] = ()) -> None:
        self.context, self.debug, self.passthrough = context, debug, passthrough


def _command_module(name: str) -> ModuleType:
    module = "import_" if name == "import" else name.replace("-", "_")  # `import` lives in import_.py
    full = f"cai.commands.{module}"
    __import__(full)
    return sys.modules[full]


def build_parser(only: str | None = None, *, full: bool = True) -> CaiParser:
    """The whole tree (`full`, for completion and the docs' tests); or, for a call, `only` the
    named command built (one command module imported), or with no command word every command as
    a name and summary (none imported)."""
    from cai.argparsing import CaiParser, add_global_flags

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
        module = _command_module(name)
        sub = module.add_parser(subparsers)
        if not getattr(module, "PASSTHROUGH", False):
            add_global_flags(sub, on_subcommand=True, taken=getattr(module, "OWN_SHORT_FLAGS", ()))
        sub.set_defaults(_module=name)
    return parser


def _command_word(argv: list[str]) -> int | None:
    """Where the command word is, or None when argv asks for help (or names no command) first."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _GLOBAL_VALUE_FLAGS:
            i += 2
        elif token in ("-h", "--help", "--version", "--"):
            return None
        elif token.startswith("-"):
            i += 1
        else:
            return i if token in COMMANDS else None
    return None


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """For commands that hand the rest of argv to another program (`cai docker ps -a`), cut argv
    after the command word so argparse never sees the program's own flags."""
    i = _command_word(argv)
    if i is not None and getattr(_command_module(argv[i]), "PASSTHROUGH", False):
        return argv[: i + 1], argv[i + 1 :]
    return argv, []


def _print_error(exc: CaiError) -> None:
    from cai import output

    output.error(exc.message)
    for line in exc.extra:
        output.plain_err(line)


_KIND_BY_CODE = {10: "container_not_found", 11: "container_start_failed", 12: "ssh_setup_failed",
                 13: "ssh_connect_failed", 14: "host_key_mismatch", 15: "container_foreign", 130: "interrupted"}


def _promise_json_error(args: Any, kind: str, message: str, code: int, details: Sequence[str] = ()) -> None:
    """A command that promised one JSON document keeps the promise when it fails before printing it
    (a cron job's `cai gc --json > night.json` then holds the reason, not nothing)."""
    from cai import output

    if args is None or output.json_emitted():
        return
    # A command whose JSON hangs on more than --json says so itself; --json alone promises version 1.
    promised = getattr(_command_module(args._module), "json_promised", None)
    version = promised(args) if promised is not None else \
        output.JSON_SCHEMA_VERSION if getattr(args, "json", False) else None
    if version is None:
        return
    import re

    lines = [re.sub(r"^\[(ERROR|WARN|INFO|HINT)\]\s*", "", line).strip() for line in details]
    try:
        output.emit_json_error(version, kind, message, int(code), [line for line in lines if line])
    except OSError:
        pass  # stdout is gone: the message on stderr is all there is


def _error_kind(exc: Any) -> str:
    engine_kind = getattr(exc, "kind", None)  # engine.EngineUnavailable's class
    if isinstance(engine_kind, str):
        return f"engine_{engine_kind}"
    return _KIND_BY_CODE.get(exc.code, "error")


def cli(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list == ["--version"] and sys.stdout is not None:  # nothing else to import or parse
        try:
            sys.stdout.write(f"cai {__version__}\n")
            sys.stdout.flush()
        except OSError:  # a closed pipe, as argparse's own --version path ends
            pass
        return 0
    from cai import output
    from cai.errors import CaiError, ExitCode

    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    debug = "-D" in args_list or "--debug" in args_list
    args = None
    try:
        head, rest = _split_passthrough(args_list)
        word = _command_word(head)
        parser = build_parser(only=head[word] if word is not None else None, full=False)
        args = parser.parse_args(head)
        output.configure(verbose=args.verbose, quiet=args.quiet)
        if args.command is None:
            parser.print_help()
            return ExitCode.OK
        ctx = Ctx(context=args.context, debug=args.debug, passthrough=tuple(rest))
        return int(_command_module(args._module).run(args, ctx))
    except CaiError as exc:
        _print_error(exc)
        _promise_json_error(args, _error_kind(exc), exc.message, exc.code, exc.extra)
        return exc.code
    except SystemExit as exc:  # argparse's --help and --version
        return exc.code if isinstance(exc.code, int) else ExitCode.ERROR
    except KeyboardInterrupt:
        output.plain_err()
        _promise_json_error(args, "interrupted", "Interrupted", ExitCode.INTERRUPTED)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.ERROR
    except Exception as exc:  # no traceback reaches a user, unless they asked with --debug
        if debug:
            import traceback

            traceback.print_exc()
        message = f"Unexpected error: {type(exc).__name__}: {output.shown(str(exc))[:500]}"
        output.error(message)
        _promise_json_error(args, "unexpected", message, ExitCode.ERROR)
        return ExitCode.ERROR


def cli_exit() -> None:
    code = cli()
    try:
        if sys.stdout is not None:  # None when the caller closed it (`cai … >&-`)
            sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)

