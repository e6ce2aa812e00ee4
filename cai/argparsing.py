"""argparse, made strict: usage errors raise CaiError (rc 1) in the original's words, abbreviations
are off, and a flag given twice is an error rather than "last one wins"."""

from __future__ import annotations

import argparse
import re
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

from cai.errors import CaiError, ExitCode
from cai.output import shown

# argparse looks up a translation for every title, usage and error it builds (gettext searches
# the locale directories afresh each time, about 1 ms a call); cai's messages are English only.
argparse._ = lambda message: message  # type: ignore[attr-defined]
argparse.ngettext = lambda singular, plural, count: singular if count == 1 else plural  # type: ignore[attr-defined]

_SEEN = "_cai_seen_"


def _reject_repeat(parser: argparse.ArgumentParser, namespace: argparse.Namespace, action: argparse.Action, option: str | None) -> None:
    marker = _SEEN + action.dest
    if getattr(namespace, marker, False):
        parser.error(f"repeated option: {option or action.dest}")
    setattr(namespace, marker, True)


class _StoreOnce(argparse._StoreAction):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if values == "" and option_string is not None:  # `--age=` or `--age ""`: the original's one line
            raise CaiError(ExitCode.ERROR, f"{option_string} requires a value")
        _reject_repeat(parser, namespace, self, option_string)
        super().__call__(parser, namespace, values, option_string)


class _StoreTrueOnce(argparse._StoreTrueAction):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        _reject_repeat(parser, namespace, self, option_string)
        super().__call__(parser, namespace, values, option_string)


_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^argument (\S+?)(?:/\S+)?: expected one argument$"),
     lambda m, p: f"{m[1]} requires a value{p.missing_value_hints.get(m[1], '')}"),
    (re.compile(r"^argument (\S+?)(?:/\S+)?: not allowed with argument (\S+?)(?:/\S+)?$"), None),
    (re.compile(r"^the following arguments are required: (.*)$"), lambda m, p: f"Missing required argument: {m[1]}"),
    (re.compile(r"^repeated option: (.*)$"), lambda m, p: f"{m[1]} was given more than once"),
]


def _terminal_width() -> int:
    """shutil.get_terminal_size().columns - 2, as HelpFormatter computes it, without importing shutil."""
    import os
    import sys

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns - 2


class CaiParser(argparse.ArgumentParser):
    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_terminal_width())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", "store", _StoreOnce)
        self.register("action", None, _StoreOnce)
        self.register("action", "store_true", _StoreTrueOnce)

    def _ordered(self, a: str, b: str) -> tuple[str, str]:
        """Name two conflicting flags in the order the command defines them, as the original does."""
        position = {opt: i for i, action in enumerate(self._actions) for opt in action.option_strings}
        return (a, b) if position.get(a, 0) <= position.get(b, 0) else (b, a)

    def error(self, message: str) -> NoReturn:
        text = self._translate(message)
        raise CaiError(ExitCode.ERROR, text, f"Use '{self.prog} --help' for usage")

    def _translate(self, message: str) -> str:
        if message.startswith("unrecognized arguments: "):
            token = self._first_unrecognized
            if token is not None:
                kind = "Unknown option" if token.startswith("-") and token != "-" else "Unexpected argument"
                return f"{kind}: {shown(token)}"
        for pattern, render in _PATTERNS:
            match = pattern.match(message)
            if match is None:
                continue
            if render is None:
                first, second = self._ordered(match[2], match[1])
                return f"{first} and {second} are mutually exclusive"
            return render(match, self)
        return shown(message[:1].upper() + message[1:])

    _first_unrecognized: str | None = None
    # Per-flag text after "--flag requires a value", e.g. examples of a valid value.
    missing_value_hints: dict[str, str] = {}

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:  # type: ignore[override]
        """Unknown tokens are errors here, so a subcommand names itself in the usage hint."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self._first_unrecognized = extras[0]
            self.error("unrecognized arguments: " + " ".join(extras))
        for key in [k for k in vars(parsed) if k.startswith(_SEEN)]:
            delattr(parsed, key)
        return parsed, extras


def add_global_flags(parser: argparse.ArgumentParser, *, on_subcommand: bool, taken: tuple[str, ...] = ()) -> None:
    """Flags valid both before and after the subcommand (`cai -v status`, `cai status -v`).
    `taken`: short flags the command uses for itself (`cai ps -q`, as docker's); the long ones stay."""
    default: Any = argparse.SUPPRESS if on_subcommand else False
    group = parser.add_argument_group("global options")
    group.add_argument("--verbose", action="store_true", default=default, help="show [INFO] and [OK] messages")
    group.add_argument(*[flag for flag in ("-q", "--quiet") if flag not in taken], action="store_true", default=default,
                       help="hide [INFO] and [OK] messages (wins over --verbose)")
    group.add_argument("-D", "--debug", action="store_true", default=default, help="show tracebacks of unexpected errors")
    group.add_argument(
        "--context",
        metavar="NAME",
        default=argparse.SUPPRESS if on_subcommand else None,
        help="Docker context to use (default: CONTAINAI_SECURE_ENGINE_CONTEXT, else [secure_engine] context_name "
        "in the config, each an error when that context is missing; else containai-docker when it exists, else default)",
    )
