"""A small, documented subset of Go's text/template, as `docker --format` takes it.

`{{.Field}}` and `{{.A.B}}` look a field up; `{{json .A}}` prints it as JSON; `{{.}}` and
`{{json .}}` are the whole document; `\\t` and `\\n` in the template are a tab and a newline.
Strings print as they are, null as `<no value>` (Go's word), objects and lists as JSON. Anything
else between the braces is an error, never a silently empty column.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from cai.errors import CaiError, ExitCode

_ACTION_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH_RE = re.compile(r"^\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
MISSING = "<no value>"


class Template:
    def __init__(self, text: str) -> None:
        self.text = text.replace("\\t", "\t").replace("\\n", "\n")
        self.parts: list[str | tuple[bool, list[str]]] = []
        position = 0
        for match in _ACTION_RE.finditer(self.text):
            self.parts.append(self.text[position:match.start()])
            self.parts.append(_action(match.group(1).strip(), text))
            position = match.end()
        rest = self.text[position:]
        if "{{" in rest or "}}" in rest:
            raise CaiError(ExitCode.ERROR, f"Template parsing error: unclosed action in {text!r}")
        self.parts.append(rest)

    def fields(self) -> list[list[str]]:
        return [part[1] for part in self.parts if isinstance(part, tuple)]

    def render(self, document: Any) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            as_json, path = part
            value = lookup(document, path)
            out.append(json.dumps(value, ensure_ascii=False) if as_json else _shown(value))
        return "".join(out)


def _action(body: str, template: str) -> tuple[bool, list[str]]:
    as_json = False
    if body.startswith("json "):
        as_json, body = True, body[5:].strip()
    if not _PATH_RE.match(body):
        raise CaiError(ExitCode.ERROR, f"Template parsing error: unsupported action {{{{{body}}}}} in {template!r}",
                       "Supported: {{.Field}}, {{.A.B}}, {{json .A}}, {{.}} (see docs/cli-reference.md)")
    return as_json, [name for name in body[1:].split(".") if name]


def lookup(document: Any, path: list[str]) -> Any:
    value = document
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return None
        value = value[name]
    return value


def _shown(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def check_fields(template: Template, known: Mapping[str, Any]) -> None:
    """Refuse a field that a row of `known`'s shape does not have (before any engine call)."""
    for path in template.fields():
        if path and lookup(known, path[:1]) is None and path[0] not in known:
            raise CaiError(ExitCode.ERROR, f"Template parsing error: no field {path[0]!r}",
                           f"Fields: {', '.join(sorted(known))}")
