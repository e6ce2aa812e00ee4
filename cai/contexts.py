"""Which Docker context a command uses: the policy above the engine layer.

--context, else the one the environment or the config names (an error when it is missing, never a
fallback: `gc --force` from cron must not prune another engine than the one it names), else
`containai-docker` when it exists, else `default`. The engine layer only answers whether a
context exists and where it points.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cai.config import Layers

from cai import engine, output
from cai.errors import CaiError, ExitCode

_NAME_RULE = "[ERROR] Context names start with alphanumeric and contain only [a-zA-Z0-9_-] (at most 64 characters)"


def _checked(name: str, source: str | None) -> str:
    if not engine.valid_context_name(name):
        where = f" (from {source})" if source else ""
        raise CaiError(ExitCode.ERROR, f"Invalid context name: {output.shown(name)}{where}", _NAME_RULE)
    return name


def configured(layers: Layers) -> str | None:
    """The environment's or the config's context, checked: an invalid or a missing one is an error."""
    found = layers.engine_context()
    if found is None:
        return None
    name, source = found
    _checked(name, source)
    if not engine.context_exists(name):
        raise engine.EngineUnavailable("context", f"Docker context not found: {name} (from {source})")
    return name


def resolve(explicit: str | None, layers: Layers) -> str:
    if explicit is not None:
        _checked(explicit, None)
        if not engine.context_exists(explicit):
            raise engine.EngineUnavailable("context", f"Docker context not found: {explicit} (from --context)")
        return explicit
    named = configured(layers)
    if named is not None:
        return named
    return engine.DEDICATED_CONTEXT if engine.context_exists(engine.DEDICATED_CONTEXT) else engine.DEFAULT_CONTEXT


def candidates(explicit: str | None, layers: Layers) -> list[str]:
    """Where a container may live when looked up by name: config context, containai-docker, default."""
    if explicit is not None:
        return [resolve(explicit, layers)]
    names: list[str] = []
    named = configured(layers)
    if named is not None:
        names.append(named)
    if engine.context_exists(engine.DEDICATED_CONTEXT):
        names.append(engine.DEDICATED_CONTEXT)
    names.append(engine.DEFAULT_CONTEXT)
    return list(dict.fromkeys(names))


def find_by_name(name: str, explicit: str | None, layers: Layers) -> engine.Container:
    """Probe every candidate context. One hit is the answer; none is exit 10; several is the
    ambiguity error alone. When none has it but one could not be asked, that context's classified
    error is the answer: "not found" would be a guess."""
    hits: list[engine.Container] = []
    failures: list[tuple[str, engine.EngineUnavailable]] = []
    for context in candidates(explicit, layers):
        try:
            found = engine.Engine(context).inspect_container(name)
        except engine.EngineUnavailable as exc:
            failures.append((context, exc))
            continue
        if found is not None:
            hits.append(found)
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise CaiError(ExitCode.ERROR, f"Container '{name}' exists in multiple contexts:",
                       *[f"  - {c.context}" for c in hits], "Remove or rename the duplicate to resolve ambiguity.")
    if failures:
        context, exc = failures[0]
        error = engine.EngineUnavailable(exc.kind, exc.detail)
        error.extra = (*error.extra, f"[ERROR]   Context '{context}' could not be asked, so {name} may be there")
        raise error from exc
    raise CaiError(ExitCode.CONTAINER_NOT_FOUND, f"Container not found: {name}")
