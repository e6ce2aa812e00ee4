"""`cai image build`: build the agent image from the definition shipped in the package, with the
agents and CA certificates asked for (docs/image.md)."""

from __future__ import annotations

from cai import output
from cai.commands import Ctx

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from cai.commands._image_build import Certificate

DESCRIPTION = "Manage the agent image."

DEFAULT_BASE = "debian:bookworm-slim"
HASH_LABEL = "containai.image-hash"
BASE_LABEL = "containai.base"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="image_action", metavar="ACTION", title="actions", required=True)
    build = actions.add_parser(
        "build",
        help="build the agent image",
        description="Build the agent image (user agent, sshd, git, curl, rsync, Python, Node.js, "
        "/home/agent/workspace, /mnt/agent-data) on top of BASE, with the agents and CA certificates "
        "asked for. Without a registry, use a local base such as the one scripts/setup.sh imports.",
    )
    build.add_argument("--base", metavar="IMAGE", default=DEFAULT_BASE, help=f"base image (default: {DEFAULT_BASE})")
    build.add_argument("--tag", metavar="IMAGE", default=None, help="tag to build (default: containai:latest)")
    build.add_argument("--agents", metavar="LIST", default=None,
                       help="agents to install, comma-separated: claude, codex, gemini, or an [agent.NAME] of the user config")
    build.add_argument("--ca-cert", metavar="FILE", action="append", default=[],
                       help="a PEM CA certificate for the image to trust, at build and run time (repeatable; "
                       "also [image] ca_certs in the user config)")
    build.add_argument("--no-host-ca", action="store_true",
                       help="without --ca-cert or [image] ca_certs, leave out the certificates this host added to its store")


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    from pathlib import Path

    from cai import agents, config, engine, labels, resolution
    from cai.commands import _image_build as build
    from cai.userfiles import user_config_path

    base, tag = args.base, args.tag or labels.DEFAULT_IMAGE
    agents_text, ca_files, host_ca = args.agents, [Path(item) for item in args.ca_cert], not args.no_host_ca
    layers = config.Layers(None)
    selected = agents.parse_list(agents_text, layers) if agents_text is not None else []
    certificates = _certificates(ca_files, layers.user(), user_config_path(), host_ca)

    eng = engine.Engine(resolution.context_here(ctx.context))  # the engine `cai run` here would use
    output.info(f"Building {tag} from {base} [context: {eng.context}]")
    if selected:
        output.info(f"Agents: {agents.packages(selected) or 'none to install'}")
    progress = build.Progress()
    on_terminal = output.isatty()
    width = output.terminal_width() if on_terminal else 0

    shown = ""

    def on_line(line: str) -> None:
        nonlocal shown
        started = progress.feed(line)
        if on_terminal and progress.status(width) != shown:
            shown = progress.status(width)
            output.status_line(shown)
        elif started and not on_terminal:
            output.info(f"Step {progress.step}/{progress.total}: {progress.short_instruction()}")

    image_labels = {HASH_LABEL: build.definition_hash(), BASE_LABEL: base, agents.IMAGE_LABEL: agents.label_value(selected)}
    try:
        image_id = engine.build_image(eng, build.context_tar(build.image_file_names(certificates)), tag,
                                      {"BASE": base, "AGENT_PACKAGES": agents.packages(selected)}, image_labels, on_line)
    except engine.BuildFailed as exc:
        raise progress.failure(exc.detail) from exc
    finally:
        if on_terminal:
            output.status_line_done()
    output.ok(f"Built {tag} ({image_id[:19] or 'no id'})")
    output.out(tag)
    return 0


def _certificates(ca_files: list[Path], user_config: dict, config_path: Path, host_ca: bool) -> list[Certificate]:
    """--ca-cert files and `[image] ca_certs`, each checked; when neither names one, the host's
    own additions (with a warning naming them), unless --no-host-ca."""
    from cai.commands import _image_build as build

    explicit = ca_files + build.configured_ca_files(user_config, config_path)
    if explicit:
        return [cert for path in explicit for cert in build.read_certificates(path)]
    if not host_ca:
        return []
    found = build.host_extra_certificates()
    if found:
        names = ", ".join(dict.fromkeys(output.shown(str(cert.source)) for cert in found))
        output.warn(f"Adding the CA certificates this host trusts beyond Debian's to the image: {names} "
                    "(--ca-cert or [image] ca_certs chooses them; --no-host-ca leaves them out)")
    return found
