"""`cai completion bash|zsh`: print the shell completion script."""

from __future__ import annotations

import argparse

from cai import output
from cai.commands import Ctx
from cai.errors import CaiError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INSTALL = """install (then open a new shell):
  bash:  echo 'source <(cai completion bash)' >> ~/.bashrc
  zsh:   mkdir -p ~/.zfunc && cai completion zsh > ~/.zfunc/_cai && echo 'fpath=(~/.zfunc $fpath); autoload -U compinit && compinit' >> ~/.zshrc
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "completion",
        help="print the bash or zsh completion script",
        description="Print a completion script for bash or zsh. It completes commands, flags, paths and, for "
        "--container, the names of cai's containers in the context cai would use (asked of docker within 0.5 s).",
        epilog=INSTALL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shell", nargs="?", metavar="SHELL", help="bash or zsh")
    parser.set_defaults(_print_help=parser.print_help)
    return parser


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import completion

    if args.shell is None:
        args._print_help()
        return ExitCode.OK
    if args.shell not in completion.SHELLS:
        raise CaiError(ExitCode.ERROR, f"Unknown shell: {output.shown(args.shell)}",
                       f"Supported shells: {', '.join(completion.SHELLS)}")
    output.out(completion.script(args.shell).rstrip("\n"))
    return ExitCode.OK
