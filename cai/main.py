"""The entry point: argv to one command's run(), and the one place errors become exit codes."""

from __future__ import annotations

import sys

from cai import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence

    from cai.errors import CaiError

_GLOBAL_VALUE_FLAGS = ("--context",)


def _command_word(argv: list[str]) -> int | None:
    """Where the command word is, or None when argv asks for help (or names no command) first."""
    from cai.commands import COMMANDS

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
    from cai.commands import command_module

    i = _command_word(argv)
    if i is not None and getattr(command_module(argv[i]), "PASSTHROUGH", False):
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
    from cai.commands import command_module

    if args is None or output.json_emitted():
        return
    # A command whose JSON hangs on more than --json says so itself; --json alone promises version 1.
    promised = getattr(command_module(args._module), "json_promised", None)
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
    from cai.commands import Ctx, build_parser, command_module
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
        return int(command_module(args._module).run(args, ctx))
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

