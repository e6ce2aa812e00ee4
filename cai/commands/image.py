"""`cai image build`: build the agent image from the definition shipped in the package."""

from __future__ import annotations

from pathlib import Path

from cai import output
from cai.commands import Ctx

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

DESCRIPTION = "Manage the agent image."

DEFAULT_BASE = "debian:bookworm-slim"
DEFINITION_DIR = Path(__file__).resolve().parent.parent / "image"
HASH_LABEL = "containai.image-hash"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="image_action", metavar="ACTION", title="actions", required=True)
    build = actions.add_parser(
        "build",
        help="build the agent image",
        description="Build the agent image (user agent, sshd, /home/agent/workspace, /mnt/agent-data) "
        "on top of BASE. Without a registry, use a local base such as the one scripts/setup.sh imports.",
    )
    build.add_argument("--base", metavar="IMAGE", default=DEFAULT_BASE, help=f"base image (default: {DEFAULT_BASE})")
    build.add_argument("--tag", metavar="IMAGE", default=None, help="tag to build (default: containai:latest)")


def definition_hash() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(DEFINITION_DIR.iterdir()):
        if path.is_file() and not path.name.startswith((".", "__")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from cai import engine, labels, resolution

    base, tag = args.base, args.tag or labels.DEFAULT_IMAGE
    eng = engine.Engine(resolution.context_here(ctx.context))  # the engine `cai run` here would use
    output.info(f"Building {tag} from {base} [context: {eng.context}]")
    show_progress = output.isatty() or output.is_verbose()

    def on_line(line: str) -> None:
        if show_progress:
            output.plain_err(line)

    image_id = engine.build_image(
        eng, DEFINITION_DIR, tag, {"BASE": base}, {HASH_LABEL: definition_hash(), "containai.base": base}, on_line
    )
    output.ok(f"Built {tag} ({image_id[:19] or 'no id'})")
    output.out(tag)
    return 0
