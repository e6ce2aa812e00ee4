"""`cai doctor [--json]`: is everything cai needs here?"""

from __future__ import annotations

from cai import output
from cai.commands import Ctx

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

DESCRIPTION = ("Report the Docker engine (context, endpoint, version), the OpenSSH client tools "
               "and the agent image with the agents it holds. Exits 1 when something cai needs is missing.")

TOOLS = ("docker", "ssh", "ssh-keygen")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def collect(explicit_context: str | None) -> dict[str, Any]:
    import shutil

    from cai import agents, engine, labels, resolution
    from cai.errors import CaiError

    report: dict[str, Any] = {
        "engine": {"context": explicit_context, "endpoint": None, "reachable": False, "version": None, "api_version": None, "error": None},
        "tools": {tool: shutil.which(tool) for tool in TOOLS},
        "image": {"name": labels.DEFAULT_IMAGE, "present": None},
        "agents": None,  # what the image's label says it holds; None while that is unknown
        "imports": [],
    }
    problems: list[CaiError] = []
    try:
        context = resolution.context_here(explicit_context)
        report["engine"]["context"] = context
        eng = engine.Engine(context)
        report["engine"]["endpoint"] = eng.endpoint()
        info = eng.info()
        report["engine"].update(reachable=True, version=info.version, api_version=info.api_version)
        image_labels = eng.image_labels(labels.DEFAULT_IMAGE)
        report["image"]["present"] = image_labels is not None
        report["agents"] = agents.in_image(image_labels)
        from cai import volumes

        report["imports"] = volumes.leftover_imports(eng)
    except CaiError as exc:
        report["engine"]["error"] = " ".join([exc.message, *(line.replace("[ERROR]", "").strip() for line in exc.extra)])
        problems.append(exc)
    missing = [tool for tool, path in report["tools"].items() if path is None]
    report["ok"] = report["engine"]["reachable"] and not missing and bool(report["image"]["present"])
    report["problems"] = [exc.message for exc in problems] + [f"{tool} is not on PATH" for tool in missing]
    if report["engine"]["reachable"] and not report["image"]["present"]:
        report["problems"].append(f"agent image {labels.DEFAULT_IMAGE} is missing (run 'cai image build')")
    report["_errors"] = problems
    return report


def run(args: argparse.Namespace, ctx: Ctx) -> int:
    want_json = args.json
    report = collect(ctx.context)
    errors = report.pop("_errors")
    if want_json:
        output.emit_json(report)
    else:
        _print_text(report)
    for exc in errors:
        output.error(exc.message)
        for line in exc.extra:
            output.plain_err(line)
    for problem in report["problems"][len(errors):]:
        output.error(problem)
    for leftover in report["imports"]:
        what = f"helper {leftover['helper']}, {leftover['state']}" if leftover["helper"] else f"work directory {leftover['work']}"
        output.warn(f"An import into volume {leftover['volume']} is running or was interrupted ({what}); "
                    "the next 'cai import' into it finishes or discards it")
    return 0 if report["ok"] else 1


def _print_text(report: dict[str, Any]) -> None:
    eng = report["engine"]
    output.out("Docker engine")
    output.out(f"  Context:    {eng['context'] or '-'}")
    output.out(f"  Endpoint:   {eng['endpoint'] or '-'}")
    output.out(f"  Reachable:  {'yes' if eng['reachable'] else 'no'}")
    if eng["reachable"]:
        output.out(f"  Version:    {eng['version']} (API {eng['api_version']})")
    output.out("Tools")
    for tool, path in report["tools"].items():
        output.out(f"  {tool + ':':<13} {path or 'missing'}")
    image = report["image"]
    state = {True: "present", False: "missing", None: "unknown"}[image["present"]]
    output.out("Agent image")
    output.out(f"  {image['name']}: {state}")
    if image["present"]:
        held = report["agents"]
        if held is None:
            listed = "unknown (built before cai recorded them; cai image build --agents claude)"
        elif not held:
            listed = "none (cai image build --agents claude)"
        else:
            listed = ", ".join(output.shown(f"{agent['name']} {agent['version'] or agent['package'] or ''}".rstrip())
                               for agent in held)  # the image's label: whoever built it wrote it
        output.out(f"  Agents:     {listed}")
