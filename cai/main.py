"""The argparse tree, the context handed to commands, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import keyword
import sys
from types import ModuleType
from typing import Sequence

from cai import __version__, output
from cai.argparsing import CaiParser, add_global_flags
from cai.errors import CaiError, ExitCode

# Literal, ordered: `cai --help` lists them in this order. Each module has add_parser() and run().
COMMANDS = ("run", "exec", "shell", "session", "attach", "cp", "stop", "status", "ps", "logs", "kill", "restart", "wait",
            "port", "inspect", "top", "pause", "unpause", "rename", "gc", "export", "import", "ssh", "image", "doctor",
            "docker", "completion")
_GLOBAL_VALUE_FLAGS = ("--context",)


class Ctx:
    """Resolved global state, built once after parsing."""

    __slots__ = ("context", "debug", "passthrough")

    def __init__(self, context: str | None, debug: bool, passthrough: tuple[str, ...] = ()) -> None:
        self.context, self.debug, self.passthrough = context, debug, passthrough


def _command_module(name: str) -> ModuleType:
    module = name.replace("-", "_")
    if keyword.iskeyword(module):  # `import` lives in import_.py
        module += "_"
    return importlib.import_module(f"cai.commands.{module}")


def build_parser(only: str | None = None) -> CaiParser:
    """The whole tree, or (`only`) the tree with one command built and the others as bare names:
    a call then imports one command module, not all of them."""
    parser = CaiParser(
        prog="cai",
        description="Give every workspace its own Docker container for an AI agent, reached over SSH.",
    )
    parser.add_argument("--version", action="version", version=f"cai {__version__}")
    add_global_flags(parser, on_subcommand=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=CaiParser)
    for name in COMMANDS:
        if only is not None and name != only:
            subparsers.add_parser(name)
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
    output.error(exc.message)
    for line in exc.extra:
        output.plain_err(line)


def cli(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    debug = "-D" in args_list or "--debug" in args_list
    try:
        head, rest = _split_passthrough(args_list)
        word = _command_word(head)
        parser = build_parser(only=head[word] if word is not None else None)
        args = parser.parse_args(head)
        output.configure(verbose=args.verbose, quiet=args.quiet)
        if args.command is None:
            parser.print_help()
            return ExitCode.OK
        ctx = Ctx(context=args.context, debug=args.debug, passthrough=tuple(rest))
        return int(_command_module(args._module).run(args, ctx))
    except CaiError as exc:
        _print_error(exc)
        return exc.code
    except SystemExit as exc:  # argparse's --help and --version
        return exc.code if isinstance(exc.code, int) else ExitCode.ERROR
    except KeyboardInterrupt:
        output.plain_err()
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.ERROR
    except Exception as exc:  # no traceback reaches a user, unless they asked with --debug
        if debug:
            import traceback

            traceback.print_exc()
        output.error(f"Unexpected error: {type(exc).__name__}: {output.shown(str(exc))[:500]}")
        return ExitCode.ERROR


def cli_exit() -> None:
    code = cli()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)

