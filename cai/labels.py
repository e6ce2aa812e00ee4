"""Container identity: label keys, ownership rules, names and name checks. Pure functions,
except `git_branch`, which asks git."""

from __future__ import annotations

import os
import re
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Callable, Mapping

from cai import output
from cai.errors import CaiError, ExitCode

MANAGED = "containai.managed"
WORKSPACE = "containai.workspace"
SSH_PORT = "containai.ssh-port"
DATA_VOLUME = "containai.data-volume"
WORKSPACE_VOLUME = "containai.workspace-volume"  # on a remote engine: the volume holding the workspace's copy
TEMPLATE = "ai.containai.template"
TEMPLATE_HASH = "ai.containai.template-hash"
IMAGE_TAG = "containai.image-tag"
KEEP = "containai.keep"
HELPER = "containai.helper"  # "true" on cai's export/import helpers and on its helper image
HELPER_ROLE = "containai.helper.role"  # export | import | cp
HELPER_VOLUME = "containai.helper.volume"
HELPER_SHELL = "containai.helper.shell"  # on a helper image: "true" when it can run the import swap

MANAGED_FILTER = f"{MANAGED}=true"
DEFAULT_IMAGE = "containai:latest"
DEFAULT_MEMORY = "4g"
DEFAULT_CPUS = 2.0
MAX_NAME_LEN = 24
MAX_COLLISION_SUFFIX = 99

# Docker's own rule for container names; the length cap keeps hostnames and messages sane.
CONTAINER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
MAX_CONTAINER_NAME_LEN = 128


def _label(labels: Mapping[str, str] | None, key: str) -> str:
    value = (labels or {}).get(key) or ""
    return "" if value == "<no value>" else value


def is_managed(labels: Mapping[str, str] | None) -> bool:
    """Strict rule (stop, status, export, import): the label is exactly `true`."""
    return _label(labels, MANAGED) == "true"


def is_workspace_container(labels: Mapping[str, str] | None) -> bool:
    """The one ownership rule, for every command: cai's label is exactly `true`, and it is not one
    of cai's helpers. The original also took an unlabelled container of a `containai:` image for
    its own in run, shell and exec; `docker create containai:latest` then counted as cai's and
    failed later with exit 12 and a wrong hint (docs/differences.md)."""
    return is_managed(labels) and not _label(labels, HELPER)


KEEP_VALUES = ("true", "1", "yes")


def is_kept(labels: Mapping[str, str] | None) -> bool:
    """`containai.keep` protects on true, 1 or yes, in any case."""
    return _label(labels, KEEP).strip().lower() in KEEP_VALUES


def unknown_keep_value(labels: Mapping[str, str] | None) -> str | None:
    """A `containai.keep` value that protects nothing and is not plainly "no": worth reporting."""
    value = _label(labels, KEEP)
    if not value or value.strip().lower() in KEEP_VALUES + ("false", "0", "no"):
        return None
    return value


def label(labels: Mapping[str, str] | None, key: str) -> str:
    """A label value, with Docker's `<no value>` rendering treated as missing."""
    return _label(labels, key)


def ssh_port(labels: Mapping[str, str] | None) -> int | None:
    """The published SSH port a container was created with, or None when its label has none."""
    value = _label(labels, SSH_PORT)
    if not (value.isascii() and value.isdigit()):  # `²` and `١` are digits to str.isdigit()
        return None
    port = int(value)
    return port if 0 < port < 65536 else None


def validate_container_name(name: str) -> str:
    if not name or len(name) > MAX_CONTAINER_NAME_LEN or not CONTAINER_NAME_RE.match(name):
        raise CaiError(
            ExitCode.ERROR,
            f"Invalid container name: {output.shown(name)}",
            "[ERROR] Container names must start with alphanumeric and contain only [a-zA-Z0-9_.-]"
            f" (at most {MAX_CONTAINER_NAME_LEN} characters)",
        )
    return name


# --- workspace paths -------------------------------------------------------------------------


def normalize_path(path: str | os.PathLike[str]) -> str:
    """`cd -- P && pwd -P`: an absolute path with symlinks resolved; the input when it is no directory."""
    raw = os.fspath(path)
    if "\x00" in raw:
        return raw
    expanded = os.path.expanduser(raw)
    if os.path.isdir(expanded):
        return os.path.realpath(expanded)
    return raw


def resolve_workspace(path: str | None) -> Path:
    """The normalized workspace, or the original's error when it is not a directory."""
    raw = os.getcwd() if path is None else path
    if raw == "":
        raise CaiError(ExitCode.ERROR, "--workspace requires a value")
    normalized = normalize_path(raw)
    if "\x00" in raw or not os.path.isdir(normalized):
        raise CaiError(ExitCode.ERROR, f"Workspace path does not exist: {output.shown(raw)}")
    from pathlib import Path

    return Path(normalized)


# --- names -----------------------------------------------------------------------------------


def _sanitize_part(text: str) -> str:
    text = text.lower().replace("/", "-")
    text = re.sub(r"[^a-z0-9-]", "", text)
    text = re.sub(r"-{2,}", "-", text)
    return text.strip("-")


def container_name(repo: str, branch: str | None) -> str:
    """`{repo}-{branch}` in at most 24 chars, following `_containai_container_name`.

    `branch` is the output of `git rev-parse --abbrev-ref HEAD` (None outside a work tree).
    """
    if branch is None:
        branch_leaf = "nogit"
    elif branch in ("", "HEAD"):
        branch_leaf = "detached"
    else:
        branch_leaf = branch.rsplit("/", 1)[-1]
    repo_part = _sanitize_part(repo) or "repo"
    branch_part = _sanitize_part(branch_leaf) or "branch"
    budget = MAX_NAME_LEN - 1
    repo_keep, branch_keep = len(repo_part), len(branch_part)
    while repo_keep + branch_keep > budget:
        if repo_keep >= branch_keep and repo_keep > 1:
            repo_keep -= 1
        elif branch_keep > 1:
            branch_keep -= 1
        else:
            break
    repo_part = repo_part[:repo_keep].rstrip("-") or "repo"
    branch_part = branch_part[:branch_keep].rstrip("-") or "branch"
    return f"{repo_part}-{branch_part}"


def git_branch(workspace: Path) -> str | None:
    """The branch for naming: None when not in a git work tree, "" when HEAD has no commit."""
    from cai import proc

    inside = proc.run(["git", "-C", str(workspace), "rev-parse", "--is-inside-work-tree"], timeout=5)
    if inside.rc != 0 or inside.out.strip() != "true":
        return None
    head = proc.run(["git", "-C", str(workspace), "rev-parse", "--abbrev-ref", "HEAD"], timeout=5)
    return head.out.strip() if head.rc == 0 else ""


def container_name_for(workspace: Path) -> str:
    from pathlib import Path

    return container_name(Path(str(workspace).rstrip("/") or "/").name, git_branch(workspace))


def legacy_container_name(normalized_path: str) -> str:
    import hashlib

    return "containai-" + hashlib.sha256(normalized_path.encode()).hexdigest()[:12]


def with_suffix(base: str, n: int) -> str:
    suffix = f"-{n}"
    return base[: MAX_NAME_LEN - len(suffix)].rstrip("-") + suffix


def resolve_new_name(base: str, workspace: str, workspace_of: Callable[[str], str | None]) -> str:
    """The creation name: `base`, or `base-2`..`base-99` when taken by another workspace.

    `workspace_of(name)` returns the `containai.workspace` label of an existing container, or
    None when no container has that name.
    """
    candidate = base
    for n in range(2, MAX_COLLISION_SUFFIX + 2):
        owner = workspace_of(candidate)
        if owner is None or owner == workspace:
            return candidate
        if n > MAX_COLLISION_SUFFIX:
            break
        candidate = with_suffix(base, n)
    raise CaiError(ExitCode.ERROR, f"Too many container name collisions (max {MAX_COLLISION_SUFFIX})")


def sanitize_hostname(name: str) -> str:
    text = name.lower().replace("_", "-")
    text = re.sub(r"[^a-z0-9-]", "", text)
    text = re.sub(r"-{2,}", "-", text).strip("-")
    return text[:63].rstrip("-") or "container"
