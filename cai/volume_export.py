"""Export of a container's data volume (the export issue). Until it lands, asking for an export
fails cleanly, so `cai stop --export` never skips it silently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cai.errors import CaiError, ExitCode

if TYPE_CHECKING:
    from cai import engine


def export_container(eng: "engine.Engine", container: "engine.Container") -> None:
    raise CaiError(ExitCode.ERROR, "Export is not available in this version of cai")
