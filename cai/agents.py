"""The agents cai installs into its image and starts in a container: the known ones, pinned here
and nowhere else, and the user's own (`[agent.NAME]` in the user config), so that a new agent
needs no code change.

An agent's definition (package, command, arguments) comes from the user config only: a repo
config sits in the workspace, which the agent writes, and a package named there would be
installed by `cai image build` into an image that other workspaces share. Which agent `cai run`
starts by default may come from a repo config (`[agent] default`), as in the original.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence

    from cai.config import Layers

from cai import output
from cai.errors import CaiError, ExitCode

DEFAULT_AGENT = "claude"
NAME_RULE = "names start with a lowercase letter or digit and contain only [a-z0-9_-] (at most 32 characters)"


@dataclass(frozen=True)
class Agent:
    name: str
    package: str | None  # an npm package spec (`@scope/name@1.2.3`), or None when the image need not install it
    command: tuple[str, ...]  # what starts it, looked up on the agent's PATH
    args: tuple[str, ...] = ()  # always passed first: the container is the boundary, so its own prompts are off

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]


# The agents of the original's image, with its wrappers' arguments (reference agents-sync-network
# §2). Versions are pinned so that an image built twice holds the same agents, each the newest
# whose `--version` runs on the image's Node.js, Debian bookworm's 18 (docs/image.md):
# - claude: a native binary that npm's postinstall (`node install.cjs`) puts in place; its
#   package asks for node >= 22, which only makes npm warn (EBADENGINE).
# - codex: a native binary too (node >= 16).
# - gemini: JavaScript that needs node >= 20 from 0.1.13 on (RegExp `v` flag), in its own code or
#   in its dependencies: 0.1.1 is the last that starts on 18. On a base with a newer Node.js,
#   `[agent.gemini] package = "@google/gemini-cli@0.61.0"` in the user config.
KNOWN: dict[str, Agent] = {
    "claude": Agent("claude", "@anthropic-ai/claude-code@2.1.332", ("claude",), ("--dangerously-skip-permissions",)),
    "codex": Agent("codex", "@openai/codex@0.171.0", ("codex",), ("--dangerously-bypass-approvals-and-sandbox",)),
    "gemini": Agent("gemini", "@google/gemini-cli@0.1.1", ("gemini",), ("--yolo",)),
}


def valid_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name))


def valid_package(spec: Any) -> bool:
    """One word of `npm install -g`: the image's build splits the list on spaces, and a leading
    '-' would be an option."""
    return isinstance(spec, str) and bool(spec) and not spec.startswith("-") and spec.isprintable() \
        and not any(char.isspace() for char in spec)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise CaiError(ExitCode.ERROR, f"Invalid {where}: a list of non-empty strings")
    return tuple(value)


def defined(layers: Layers) -> dict[str, Agent]:
    """The known agents, with the user config's `[agent.NAME]` tables over them: `package`,
    `command` and `args` each replace the known agent's, and a new NAME is a new agent."""
    agents = dict(KNOWN)
    table = layers.user().get("agent")
    if not isinstance(table, dict):
        return agents
    for name, entry in table.items():
        if not isinstance(entry, dict):
            continue  # `[agent] default = …` and other plain keys
        where = f"[agent.{name}]"
        if not valid_name(name):
            raise CaiError(ExitCode.ERROR, f"Invalid agent name in {where}: {output.shown(name)}", f"[ERROR] Agent {NAME_RULE}")
        known = agents.get(name)
        package = entry.get("package", known.package if known else None)
        if package is not None and not valid_package(package):
            raise CaiError(ExitCode.ERROR, f"Invalid {where} package: {output.shown(repr(package))}",
                           "[ERROR] An npm package spec (name, name@version, @scope/name@version): no spaces, no leading '-'")
        if "command" in entry:
            command = _strings(entry["command"], f"{where} command")
        elif known is not None:
            command = known.command
        else:
            command = (name,)
        args = _strings(entry["args"], f"{where} args") if "args" in entry else (known.args if known else ())
        agents[name] = Agent(name, package, command, args)
    return agents


def names_for_display(layers: Layers) -> list[str]:
    """The agents' names for `status` and `ps`: a broken `[agent.X]` is `cai run`'s error to
    report, not a reason for a listing to fail; the known ones and the table's keys then."""
    try:
        return list(defined(layers))
    except CaiError:
        table = layers.user().get("agent")
        return [*KNOWN, *(name for name in table if isinstance(name, str))] if isinstance(table, dict) else list(KNOWN)


def lookup(name: str, layers: Layers) -> Agent:
    agents = defined(layers)
    if name not in agents:
        raise CaiError(ExitCode.ERROR, f"Unknown agent: {output.shown(name)}", f"[ERROR] Known agents: {', '.join(sorted(agents))}",
                       "[HINT] Define another in the user config: [agent.NAME] package = \"...\", command = [\"...\"]")
    return agents[name]


def parse_list(text: str, layers: Layers) -> list[Agent]:
    """`--agents claude,codex`: each once, in the order given."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise CaiError(ExitCode.ERROR, f"Invalid --agents value: {output.shown(text)}", "[ERROR] A comma-separated list, e.g. claude,codex")
    return [lookup(name, layers) for name in dict.fromkeys(names)]


def running_agent(detached: Sequence[str] | None, names: Iterable[str]) -> str | None:
    """The agent session among a container's running detached sessions: the first one named
    after an agent (`cai run` names an agent's session after it)."""
    known = set(names)
    return next((name for name in detached or () if name in known), None)


def default_name(explicit: str | None, layers: Layers) -> str:
    """--agent, else CONTAINAI_AGENT, else `[agent] default` (repo config, then the user's), else claude."""
    if explicit:
        return explicit
    env = os.environ.get("CONTAINAI_AGENT")
    if env:
        return env
    for _, doc in layers.docs():
        table = doc.get("agent")
        value = table.get("default") if isinstance(table, dict) else None
        if isinstance(value, str) and value:
            return value
    return DEFAULT_AGENT


# --- what an image holds ---------------------------------------------------------------------

IMAGE_LABEL = "containai.agents"  # on the image: {"name": "package spec", ...} of `--agents`


def packages(selected: list[Agent]) -> str:
    """The image build's AGENT_PACKAGES: the specs to install, space-separated, in order."""
    return " ".join(agent.package for agent in selected if agent.package)


def label_value(selected: list[Agent]) -> str:
    import json

    return json.dumps({agent.name: agent.package or "" for agent in selected}, separators=(",", ":"))


def spec_version(spec: str) -> str | None:
    """`@scope/name@1.2.3` -> 1.2.3; None for a spec without a version (or a range, a tag)."""
    import re

    match = re.fullmatch(r"(?:@[^/@]+/)?[^/@]+@(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)", spec)
    return match[1] if match else None


def in_image(image_labels: dict[str, str] | None) -> list[dict[str, Any]] | None:
    """The agents an image was built with (name, package, version), from its label; None when
    the image carries no such label (built before agents were recorded) or a broken one."""
    import json

    text = (image_labels or {}).get(IMAGE_LABEL)
    if text is None:
        return None
    try:
        recorded = json.loads(text)
    except ValueError:
        return None
    if not isinstance(recorded, dict):
        return None
    return [{"name": str(name), "package": spec or None, "version": spec_version(spec) if isinstance(spec, str) else None}
            for name, spec in recorded.items() if isinstance(spec, str)]
