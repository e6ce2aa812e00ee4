"""The docs name every command and flag the parser has, so neither can drift from the other."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cai.commands import COMMANDS, build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"
GLOBAL = {"-h", "--help", "--verbose", "-q", "--quiet", "-D", "--debug", "--context", "--version"}


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def parsers():
    """(`cai run`, parser) for every command and nested command."""
    def walk(parser, path):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
    yield from walk(build_parser(), "cai")


REFERENCE = sections((DOCS / "cli-reference.md").read_text())


def documented(body: str, token: str) -> bool:
    return re.search(r"`" + re.escape(token) + r"[` ]", body) is not None


def test_every_command_has_a_section():
    for name in COMMANDS:
        assert any(title == f"cai {name}" or title.startswith(f"cai {name} ") for title in REFERENCE), name


def test_global_options_are_documented():
    body = REFERENCE["Global options"]
    root = dict(parsers())["cai"]
    for action in root._actions:
        for opt in action.option_strings:
            assert documented(body, opt), opt


@pytest.mark.parametrize("path, parser", [(p, q) for p, q in parsers() if p != "cai"], ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_is_in_its_commands_section(path, parser):
    own = [a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]
    options = [opt for a in own for opt in a.option_strings if opt not in GLOBAL]
    positionals = [a.metavar for a in own if not a.option_strings and a.nargs != argparse.REMAINDER]
    if not options and not positionals:
        return  # `cai ssh`, `cai image`: their subcommands have the sections
    assert path in REFERENCE, f"docs/cli-reference.md has no '## {path}' section"
    for token in options + positionals:
        assert documented(REFERENCE[path], token), f"{path}: {token} is not in docs/cli-reference.md"
