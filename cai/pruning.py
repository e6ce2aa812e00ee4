"""Stale-container selection and removal for `cai gc`.

Safe first. Only containers labelled `containai.managed=true` in the resolved context are
candidates, and only when exited or never started, not labelled `containai.keep=true`, and idle
for the threshold: since they *stopped* (State.FinishedAt), or since creation when they never
ran. Ages are measured against the engine's clock. Each container is inspected again right before
a plain `docker rm` (no force), so one that started meanwhile is kept and reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

from cai import all_contexts, clock, engine, labels, output, ssh
from cai.errors import CaiError, ExitCode

IMAGE_PREFIXES = ("containai:", "ghcr.io/containai/")
PRUNABLE_STATES = ("exited", "created")
KEEP_REASON = "containai.keep=true"  # the original's words, also for 1 and yes


# --- the plan: pure parts --------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    name: str
    id: str
    status: str
    reference_time: str
    age_seconds: int


@dataclass(frozen=True)
class Passed:
    """A container gc leaves alone, and why."""

    name: str
    id: str
    status: str
    reason: str


@dataclass(frozen=True)
class StaleHelper:
    """An export or import helper left behind (cai was killed), idle for an hour or more."""

    id: str
    role: str
    volume: str
    age_seconds: int


HELPER_MIN_AGE_S = 3600
# A running helper with no exec may be receiving an archive (put_archive shows no exec): only a
# day of that is taken for a leftover, whatever --age says.
RUNNING_HELPER_MIN_AGE_S = 86400


@dataclass(frozen=True)
class StaleImage:
    reference: str
    id: str


@dataclass
class Plan:
    context: str
    age: str
    threshold_seconds: int
    daemon_time: str
    now_epoch: int
    candidates: list[Candidate] = field(default_factory=list)
    protected: list[Passed] = field(default_factory=list)
    skipped: list[Passed] = field(default_factory=list)
    images: list[StaleImage] = field(default_factory=list)
    helpers: list[StaleHelper] = field(default_factory=list)
    unrecognized_keep: list[dict[str, str]] = field(default_factory=list)
    engine_id: str = ""  # all_contexts.engine_identity: two contexts may name one engine

    @property
    def total(self) -> int:
        return len(self.candidates) + len(self.images) + len(self.helpers)


def protection(listed: Mapping[str, Any]) -> str | None:
    """Why a listed container may never be pruned (its state, then the keep label), or None."""
    state = listed.get("State") or ""
    if state not in PRUNABLE_STATES:
        return state or "unknown state"
    if labels.is_kept(listed.get("Labels")):
        return KEEP_REASON
    return None


def reference_time(container: "engine.Container") -> str:
    return container.finished_at if container.status == "exited" else container.created


def judge(container: "engine.Container", now_epoch: int, threshold: int) -> Candidate | Passed | None:
    """A candidate, a skip with its reason, or None when it is not idle long enough (or has
    changed into something gc must leave alone since it was listed)."""
    if container.status not in PRUNABLE_STATES or labels.is_kept(container.labels) or not labels.is_managed(container.labels):
        return None
    stamp = reference_time(container)
    if clock.is_zero_time(stamp):
        return Passed(container.name, container.id, container.status, "invalid timestamp")
    try:
        since = clock.epoch_seconds(stamp)
    except (ValueError, OverflowError):
        return Passed(container.name, container.id, container.status, "timestamp parse error")
    age = now_epoch - since
    if age < threshold:
        return None
    return Candidate(container.name, container.id, container.status, stamp, age)


def may_be_stale(listed: Mapping[str, Any], now_epoch: int, threshold: int) -> bool:
    """The list's Created (epoch seconds) bounds FinishedAt from below, so a container created
    within the threshold needs no inspect."""
    created = listed.get("Created")
    return not isinstance(created, int) or now_epoch - created >= threshold


def stale_images(images: list[Mapping[str, Any]], containers: list[Mapping[str, Any]]) -> list[StaleImage]:
    """Our tags on images that no container, in any state, was made from (compared by image id,
    so a tag that shares its id with a used image is not offered)."""
    used = {c.get("ImageID") for c in containers} | {c.get("Image") for c in containers}
    found = []
    for image in images:
        if image.get("Id") in used:
            continue
        for tag in image.get("RepoTags") or ():
            if "<none>" in tag or not tag.startswith(IMAGE_PREFIXES) or tag in used:
                continue
            found.append(StaleImage(tag, image.get("Id", "")))
    return found


# --- the plan: engine reads ------------------------------------------------------------------


Notes = list[tuple[str, str]]  # (level, message), kept for a caller that prints them later


def _say(notes: Notes | None, level: str, message: str) -> None:
    if notes is None:
        getattr(output, level)(message)
    else:
        notes.append((level, message))


def make_plan(eng: "engine.Engine", age: str, threshold: int, *, with_images: bool, notes: Notes | None = None) -> Plan:
    """One list call, one info call, and inspects (side by side) of only the containers that can
    be old enough; two more list calls for images. With `notes`, messages are collected there
    instead of printed (`--all-contexts` plans in threads and prints in order afterwards)."""
    listed = engine.list_containers(eng, [labels.MANAGED_FILTER])
    daemon = eng.call("info")
    daemon_time = daemon.get("SystemTime", "")
    try:
        now_epoch = clock.epoch_seconds(daemon_time)
    except ValueError as exc:
        raise CaiError(ExitCode.ERROR, f"The engine reported an unreadable time: {output.shown(daemon_time)}") from exc
    plan = Plan(eng.context, age, threshold, daemon_time, now_epoch,
                engine_id=all_contexts.engine_identity(daemon, [str(item.get("Id")) for item in listed]))
    to_inspect = []
    for item in listed:
        name = (item.get("Names") or ["/?"])[0].lstrip("/")
        odd_keep = labels.unknown_keep_value(item.get("Labels"))
        if odd_keep is not None:
            plan.unrecognized_keep.append({"name": name, "value": odd_keep})
            _say(notes, "warn", f"{name}: {labels.KEEP}={output.shown(odd_keep)} protects nothing (use true, 1 or yes)")
        reason = protection(item)
        if reason is not None:
            plan.protected.append(Passed(name, item["Id"], item.get("State") or "", reason))
            if reason == KEEP_REASON:
                _say(notes, "info", f"Skipping protected container: {name} ({KEEP_REASON})")
        elif may_be_stale(item, now_epoch, threshold):
            to_inspect.append(item["Id"])
    inspected = engine.inspect_many(eng, to_inspect)
    for container_id in to_inspect:  # Docker's order: newest first
        container = inspected.get(container_id)
        verdict = judge(container, now_epoch, threshold) if container is not None else None
        if isinstance(verdict, Candidate):
            plan.candidates.append(verdict)
        elif isinstance(verdict, Passed):
            plan.skipped.append(verdict)
            if verdict.reason == "invalid timestamp":
                _say(notes, "info", f"Skipping container with invalid timestamp: {verdict.name}")
            else:
                _say(notes, "info", f"Skipping container (timestamp parse error): {verdict.name}")
    if with_images:
        plan.images = stale_images(engine.list_images(eng), engine.list_containers(eng, []))
    plan.helpers = stale_helpers(eng, now_epoch, min(threshold, HELPER_MIN_AGE_S))
    return plan


def stale_helpers(eng: "engine.Engine", now_epoch: int, min_age: int) -> list[StaleHelper]:
    """Helpers created `min_age` ago or more (an hour, or a shorter --age) that run nothing: a
    swap still running is never cut, and a running helper is a day old first."""
    found = []
    for item in engine.list_containers(eng, [f"{labels.HELPER}=true"]):
        created = item.get("Created")
        if not isinstance(created, int) or now_epoch - created < min_age:
            continue
        if item.get("State") == "running" and (now_epoch - created < RUNNING_HELPER_MIN_AGE_S
                                               or engine.running_exec_ids(eng, item["Id"])):
            continue
        item_labels = item.get("Labels") or {}
        found.append(StaleHelper(item["Id"], labels.label(item_labels, labels.HELPER_ROLE),
                                 labels.label(item_labels, labels.HELPER_VOLUME), now_epoch - created))
    return found


# --- removal ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    removed_containers: list[str] = field(default_factory=list)
    removed_images: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    removed_helpers: list[str] = field(default_factory=list)

    def failed(self, kind: str) -> int:
        return sum(1 for e in self.errors if e["kind"] == kind)


def _recheck(eng: "engine.Engine", candidate: Candidate) -> str | None:
    """Why the candidate must be kept after all (read again, by id), or None to go ahead."""
    fresh = eng.inspect_container(candidate.id)
    if fresh is None:
        return "gone"
    if fresh.status in ("running", "paused", "restarting"):
        return "now running"
    if fresh.status != candidate.status or reference_time(fresh) != candidate.reference_time:
        return "changed since listing"
    return None


def remove_all(eng: "engine.Engine", plan: Plan, done: Outcome | None = None, where: str = "") -> Outcome:
    """Fills `done` as it goes, so a caller that catches an engine failure keeps what was removed.
    `where` ends each message (`[context: X]` with --all-contexts)."""
    done = Outcome() if done is None else done
    for candidate in plan.candidates:
        reason = _recheck(eng, candidate)
        if reason == "gone":
            output.info(f"Container already removed: {candidate.name}{where}")
            continue
        if reason is not None:
            output.warn(f"Skipping container ({reason}): {candidate.name}{where}")
            done.errors.append({"kind": "container", "name": candidate.name, "message": reason})
            continue
        try:
            removed = engine.remove_stopped_container(eng, candidate.id)
        except CaiError as exc:
            output.warn(f"Failed to remove container: {candidate.name}{where}")
            done.errors.append({"kind": "container", "name": candidate.name, "message": exc.message})
            continue
        if removed:
            ssh.forget_container(candidate.name, ssh.host_key_alias(plan.context, candidate.id))
            done.removed_containers.append(candidate.name)
            output.info(f"Removed container: {candidate.name}{where}")
    for helper in plan.helpers:
        try:
            if eng.inspect_container(helper.id) is None:
                continue
            if engine.running_exec_ids(eng, helper.id):  # a swap began while the prompt waited
                done.errors.append({"kind": "helper", "name": helper.id[:12], "message": "now running a swap"})
                continue
            engine.remove_container(eng, helper.id)
        except CaiError as exc:
            output.warn(f"Failed to remove helper: {helper.id[:12]}{where}")
            done.errors.append({"kind": "helper", "name": helper.id[:12], "message": exc.message})
            continue
        done.removed_helpers.append(helper.id[:12])
        output.info(f"Removed helper: {helper.id[:12]} ({helper.role} of {helper.volume}){where}")
    for image in plan.images:
        try:
            engine.remove_image(eng, image.reference)
        except CaiError as exc:
            output.warn(f"Failed to remove image: {image.reference} (may be in use){where}")
            done.errors.append({"kind": "image", "name": image.reference, "message": exc.message})
            continue
        done.removed_images.append(image.reference)
        output.info(f"Removed image: {image.reference}{where}")
    return done


# --- output ----------------------------------------------------------------------------------


def render_plan(plan: Plan) -> list[str]:
    if not plan.total:
        return ["No stale resources found."]
    lines = [f"Stale ContainAI resources (context: {plan.context}, age >= {plan.age}):", ""]
    if plan.candidates:
        lines.append("Containers:")
        lines += [f"  {c.name} ({c.status}, age: {clock.format_age(c.age_seconds)})" for c in plan.candidates]
        lines.append("")
    if plan.images:
        lines.append("Unused images:")
        lines += [f"  {i.reference}" for i in plan.images]
        lines.append("")
    if plan.helpers:
        lines.append("Leftover export/import helpers:")
        lines += [f"  {h.id[:12]} ({h.role} of {h.volume}, age: {clock.format_age(h.age_seconds)})" for h in plan.helpers]
        lines.append("")
    return lines


def render_outcome(outcome: Outcome) -> list[str]:
    lines = [""]
    if outcome.removed_containers or outcome.removed_images or outcome.removed_helpers:
        helpers = f", {len(outcome.removed_helpers)} helper(s)" if outcome.removed_helpers else ""
        lines.append(f"Removed: {len(outcome.removed_containers)} container(s), {len(outcome.removed_images)} image(s){helpers}")
    if outcome.errors:
        lines.append(f"Failed: {outcome.failed('container')} container(s), {outcome.failed('image')} image(s)")
    return lines


def json_document(plan: Plan, *, dry_run: bool, cancelled: bool, outcome: Outcome | None) -> dict[str, Any]:
    outcome = outcome or Outcome()
    return {
        "context": plan.context,
        "threshold": {"age": plan.age, "seconds": plan.threshold_seconds},
        "daemon_time": plan.daemon_time,
        "dry_run": dry_run,
        "cancelled": cancelled,
        "candidates": [asdict(c) for c in plan.candidates],
        "protected": [asdict(p) for p in plan.protected],
        "skipped": [asdict(s) for s in plan.skipped],
        "images": [asdict(i) for i in plan.images],
        "helpers": [asdict(h) for h in plan.helpers],
        "removed": {"containers": outcome.removed_containers, "images": outcome.removed_images,
                    "helpers": outcome.removed_helpers},
        "errors": outcome.errors,
        "unrecognized_keep": plan.unrecognized_keep,
    }


# --- --all-contexts: one list and one document over every context that answered -------------


def context_suffix(context: str) -> str:
    """How a line names its context, as `cai stop` marks rows of other contexts."""
    return f" [context: {context}]"


def render_plans(plans: list[Plan], age: str) -> list[str]:
    """render_plan's sections over several contexts, each line ending with its context."""
    contexts = ", ".join(plan.context for plan in plans)
    if not any(plan.total for plan in plans):
        return [f"No stale resources found (contexts: {contexts})."]
    lines = [f"Stale ContainAI resources (contexts: {contexts}, age >= {age}):", ""]
    sections = (
        ("Containers:", lambda p: [f"  {c.name} ({c.status}, age: {clock.format_age(c.age_seconds)})" for c in p.candidates]),
        ("Unused images:", lambda p: [f"  {i.reference}" for i in p.images]),
        ("Leftover export/import helpers:", lambda p: [
            f"  {h.id[:12]} ({h.role} of {h.volume}, age: {clock.format_age(h.age_seconds)})" for h in p.helpers]),
    )
    for title, items in sections:
        found = [line + context_suffix(plan.context) for plan in plans for line in items(plan)]
        if found:
            lines += [title, *found, ""]
    return lines


def merged_outcome(outcomes: list[Outcome]) -> Outcome:
    merged = Outcome()
    for outcome in outcomes:
        merged.removed_containers += outcome.removed_containers
        merged.removed_images += outcome.removed_images
        merged.removed_helpers += outcome.removed_helpers
        merged.errors += outcome.errors
    return merged


def merged_document(plans: list[Plan], outcomes: Mapping[str, Outcome], unreachable: list[dict[str, str]], *,
                    age: str, threshold_seconds: int, dry_run: bool, cancelled: bool,
                    same_engine: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """json_document of each context, flattened: every entry carries its `context`, and the
    per-context `daemon_time` moves to `contexts`."""
    per = [json_document(p, dry_run=dry_run, cancelled=cancelled, outcome=outcomes.get(p.context)) for p in plans]

    def tagged(key: str) -> list[dict[str, Any]]:
        return [{"context": doc["context"], **item} for doc in per for item in doc[key]]

    def removed(key: str, field_name: str) -> list[dict[str, str]]:
        return [{"context": doc["context"], field_name: value} for doc in per for value in doc["removed"][key]]

    return {
        "contexts": [{"context": doc["context"], "daemon_time": doc["daemon_time"]} for doc in per],
        "threshold": {"age": age, "seconds": threshold_seconds},
        "dry_run": dry_run,
        "cancelled": cancelled,
        **{key: tagged(key) for key in ("candidates", "protected", "skipped", "images", "helpers")},
        "removed": {"containers": removed("containers", "name"), "images": removed("images", "reference"),
                    "helpers": removed("helpers", "id")},
        "errors": tagged("errors"),
        "unrecognized_keep": tagged("unrecognized_keep"),
        "unreachable": unreachable,
        "same_engine": same_engine or [],
    }
