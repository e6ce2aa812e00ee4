"""`cai run`'s options for a new container: labels of the user's own, the agent's environment and
the engine's restart policy. Pure parsing; all of it is checked before any engine call."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence

from cai import output
from cai.errors import CaiError, ExitCode

RESERVED_LABEL_PREFIXES = ("containai.", "ai.containai.")
USER_SETTABLE = ("containai.keep",)  # gc.md's way to protect a container
ENV_LABEL = "containai.env"  # the agent's environment as given to `cai run -e`, as JSON
PROFILE_DIR, PROFILE_FILE = "profile.d", "containai-env.sh"  # under /etc: bash -l reads it for every login
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure)(?::([0-9]{1,4}))?$")


@dataclass(frozen=True)
class RunOptions:
    labels: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    restart_policy: Mapping[str, object] | None = None

    def given(self) -> bool:
        return bool(self.labels or self.environment or self.restart_policy)


def parse_labels(words: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for word in words:
        key, _, value = word.partition("=")
        if not key or not key.isprintable() or any(c.isspace() for c in key):
            raise CaiError(ExitCode.ERROR, f"Invalid label: {output.shown(word)} (use KEY=VALUE)")
        _utf8(word, "--label")
        if key.startswith(RESERVED_LABEL_PREFIXES) and key not in USER_SETTABLE:
            raise CaiError(ExitCode.ERROR, f"Label {output.shown(key)} is reserved: cai's own labels start with containai.")
        found[key] = value
    return found


def parse_environment(words: Sequence[str], flag: str = "--env") -> dict[str, str]:
    found: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not _ENV_NAME_RE.match(key) or "\0" in value:
            raise CaiError(ExitCode.ERROR, f"Invalid {flag} value: {output.shown(word)} (use NAME=VALUE)")
        _utf8(word, flag)
        found[key] = value
    return found


def _utf8(word: str, flag: str) -> None:
    """Labels and the profile script are UTF-8; a word from argv that is not (surrogate escapes)
    is refused before anything is made."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        raise CaiError(ExitCode.ERROR, f"Invalid {flag} value: {output.shown(word)} (not UTF-8)") from None


def parse_restart(text: str | None) -> dict[str, object] | None:
    """`no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`, as the engine takes them."""
    if text is None:
        return None
    match = _RESTART_RE.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "on-failure"):
        raise CaiError(ExitCode.ERROR, f"Invalid --restart value: {output.shown(text)}",
                       "Use no, on-failure[:N], unless-stopped or always")
    return {"Name": "" if match.group(1) == "no" else match.group(1), "MaximumRetryCount": int(match.group(2) or 0)}


def env_label(environment: Mapping[str, str]) -> dict[str, str]:
    return {ENV_LABEL: json.dumps(dict(environment), sort_keys=True)} if environment else {}


def profile_archive(environment: Mapping[str, str]) -> bytes:
    """A tar for /etc: profile.d/containai-env.sh exporting the environment, root's, mode 644."""
    import io
    import tarfile

    body = "# Written by cai run -e; read by every login shell, used by the agent's only.\n" \
        '[ "$(id -u)" = 1000 ] || return 0\n' + "".join(
        f"export {key}={shlex.quote(value)}\n" for key, value in sorted(environment.items()))
    data = body.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folder = tarfile.TarInfo(PROFILE_DIR)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        script = tarfile.TarInfo(f"{PROFILE_DIR}/{PROFILE_FILE}")
        script.size, script.mode = len(data), 0o644
        tar.addfile(script, io.BytesIO(data))
    return buffer.getvalue()
