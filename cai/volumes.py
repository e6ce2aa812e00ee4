"""Export and import of a data volume, streamed through the engine API.

Nothing touches a host path on the engine's side, so both work on a remote context. Export reads
the archive endpoint (of the managed container, or of a helper container that mounts only the
volume and is never started), and the host filters the excludes and writes the gzip tar. Import
checks every entry on the host first (archives.py), streams the tree into a work directory of the
volume through a started helper, swaps it in with a journalled script that runs detached in the
engine, and then compares the volume with the archive.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Iterator, Sequence

from cai import archives, config, contexts, engine, labels, layout, output, resolution, userfiles
from cai import container_scripts as scripts
from cai.archives import Progress, tarfile
from cai.errors import CaiError, ExitCode

VOLUME_MOUNT = "/mnt/agent-data"
HELPER_MOUNT = "/data"
PRIVATE_PATTERNS = ("shell/bashrc.d/*.priv.*",)
SECRET_PATTERNS = ("*.priv.*", ".credentials.json", "credentials.json", "auth.json", ".netrc", "*.pem", "*.key",
                   "id_rsa", "id_ecdsa", "id_ed25519")
SWAP_POLL_S = 0.1
WORKSPACE_PATH = layout.AGENT_WORKSPACE
AGENT_OWNER = (1000, 1000)


def default_filename(now: datetime) -> str:
    return f"containai-export-{now:%Y%m%d-%H%M%S}.tgz"


def output_path(arg: str | None, cwd: Path, now: datetime) -> Path:
    """The original's rules: `~` expanded; none → ./DEFAULT; a directory or a trailing `/` → DIR/DEFAULT;
    the parent must exist and be writable."""
    default = default_filename(now)
    if not arg:
        target = cwd / default
    else:
        expanded = Path(os.path.expanduser(arg))
        expanded = expanded if expanded.is_absolute() else cwd / expanded
        target = expanded / default if arg.endswith("/") or expanded.is_dir() else expanded
    parent = target.parent
    if not parent.is_dir():
        raise CaiError(ExitCode.ERROR, f"Output directory doesn't exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CaiError(ExitCode.ERROR, f"Output directory is not writable: {parent}")
    return Path(os.path.abspath(parent)) / target.name


# --- helpers ---------------------------------------------------------------------------------


def helper_labels(role: str, volume: str) -> dict[str, str]:
    return {labels.HELPER: "true", labels.HELPER_ROLE: role, labels.HELPER_VOLUME: volume}


def helper_image(eng: engine.Engine, *, needs_shell: bool) -> str:
    """cai's own helper image, else the agent image, else (for a helper that is never started) any
    local image, else a tiny image made here from the host's programs."""
    from cai import helper_image as tiny

    for image in engine.images_labelled(eng, f"{labels.HELPER}=true"):
        if not needs_shell or (image.get("Labels") or {}).get(labels.HELPER_SHELL) == "true":
            return str(image["Id"])
    if eng.image_exists(labels.DEFAULT_IMAGE):
        return labels.DEFAULT_IMAGE
    if not needs_shell:
        local = engine.list_images(eng)
        if local:
            return str(local[0]["Id"])
    rootfs, has_programs = tiny.rootfs(with_programs=engine.engine_arch(eng) == tiny.host_arch())
    if needs_shell and not has_programs:
        raise CaiError(ExitCode.ERROR, f"No image on context '{eng.context}' can run the import helper",
                       f"Build the agent image there first: cai --context {eng.context} image build")
    engine.import_image(eng, rootfs, tiny.REPOSITORY, tiny.TAG,
                        {labels.HELPER: "true", labels.HELPER_SHELL: "true" if has_programs else "false"}, ["sleep", "86400"])
    output.info(f"Made the helper image {tiny.REFERENCE} on context '{eng.context}'")
    return tiny.REFERENCE


def _require_volume(eng: engine.Engine, volume: str) -> None:
    if not engine.volume_exists(eng, volume):
        raise CaiError(ExitCode.ERROR, f"Volume does not exist: {volume}")


class _ChunkReader(io.RawIOBase):
    """A readable file over the engine's byte chunks, counting what passes."""

    def __init__(self, chunks: Iterator[bytes], progress: Progress | None = None) -> None:
        self._chunks, self._buffer, self._progress = chunks, b"", progress

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            if self._progress is not None:
                self._progress.add(len(self._buffer))
        count = min(len(target), len(self._buffer))
        target[:count], self._buffer = self._buffer[:count], self._buffer[count:]
        return count


def engine_stream(chunks: Iterator[bytes], progress: Progress | None = None) -> io.BufferedReader:
    return io.BufferedReader(_ChunkReader(chunks, progress), 1 << 16)


def engine_tar(chunks: Iterator[bytes], progress: Progress | None = None) -> tarfile.TarFile:
    return tarfile.open(fileobj=engine_stream(chunks, progress), mode="r|")


# --- export ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSource:
    """Where the volume can be read: the managed container (at VOLUME_MOUNT) or a helper."""

    container: str | None


def export(eng: engine.Engine, volume: str, target: Path, *, source: ExportSource, excludes: Sequence[str],
           extra: Sequence[tuple[str, str]] = ()) -> int:
    """Write the volume as a gzip tar at `target`, atomically: a failed export leaves no partial
    file and keeps an existing one. Returns the number of entries. `extra`: (archive directory,
    path in source.container) pairs whose regular files and directories come after the volume
    (`cai export --sessions`)."""
    _require_volume(eng, volume)
    output.info(f"Exporting volume '{volume}' to: {target}")
    patterns = archives.normalize_patterns(excludes)
    helper = None
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            if source.container is None:
                helper = engine.create_volume_helper(eng, helper_image(eng, needs_shell=False), volume, HELPER_MOUNT,
                                                     writable=False, labels=helper_labels("export", volume))
            container, path = (source.container, VOLUME_MOUNT) if helper is None else (helper, HELPER_MOUNT)
            more = [(top, lambda where=where: engine.get_archive(eng, source.container, where)) for top, where in extra]
            count = _copy_filtered(engine.get_archive(eng, container, f"{path}/."), raw, patterns, more)
            raw.flush()
            os.fsync(raw.fileno())
        _verify_gzip_tar(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        if helper is not None:
            engine.remove_container(eng, helper)
    return count


def _copy_filtered(chunks: Iterator[bytes], raw: IO[bytes], patterns: Sequence[str],
                   extra: Sequence[tuple[str, Any]] = ()) -> int:
    """The engine's tar, excludes applied, as a gzip PAX tar with `./`-relative names; then each
    `extra` (archive directory, function giving the engine's tar of one directory): its
    directories and regular files only, under that name (the volume's own entry of that name
    is left out)."""
    progress = Progress("Exporting")
    count = 0
    excluded_files: set[str] = set()
    work_dirs: set[str] = set()  # root's 0700 ones: the agent cannot make those
    try:
        with engine_tar(chunks, progress) as src, tarfile.open(fileobj=raw, mode="w|gz", format=tarfile.PAX_FORMAT) as out:
            for member in src:
                rel = archives.relative_name(member.name)
                kind = archives.kind_of(member)
                top, _, below = rel.partition("/")
                if any(top == name for name, _ in extra):
                    if not below:
                        output.warn(f"Left out '{archives.shown_name(rel)}' of the volume: the archive holds the sessions there")
                    continue
                if archives.is_work_dir(top):
                    if not below and member.isdir() and member.uid == 0 and stat.S_IMODE(member.mode) == 0o700:
                        work_dirs.add(top)
                    elif below == "phase" and top in work_dirs and member.isfile():
                        handle = src.extractfile(member)
                        phase = handle.read(64).decode(errors="replace").strip() if handle else ""
                        if phase in ("out", "in"):
                            raise CaiError(ExitCode.ERROR, f"The volume is in the middle of an interrupted import ({top}: {phase})",
                                           "Its tree is part old, part new. The next 'cai import' into it finishes the swap;"
                                           " export after that. Nothing was written.")
                    if not below:
                        output.warn(f"Left out '{archives.shown_name(rel)}': the work directory of an unfinished import")
                    continue
                if rel and archives.is_excluded(rel, patterns):
                    if kind == archives.FILE:
                        excluded_files.add(rel)
                    continue
                if kind is None:
                    output.warn(f"Left out '{archives.shown_name(rel)}': import restores no devices, FIFOs or sockets")
                    continue
                linkname = member.linkname if kind == archives.SYMLINK else ""
                if kind == archives.HARDLINK:
                    target = archives.relative_name(member.linkname)
                    if target in excluded_files:
                        output.warn(f"Left out hard link '{archives.shown_name(rel)}': its data is in an excluded file")
                        continue
                    linkname = f"./{target}"
                info = archives.clean_info(member, f"./{rel}" if rel else ".", kind=kind, linkname=linkname)
                out.addfile(info, src.extractfile(member) if kind == archives.FILE else None)
                count += 1
                progress.entry()
            for name, fetch in extra:
                with engine_tar(fetch(), progress) as more:
                    for member in more:
                        kind = archives.kind_of(member)
                        below = archives.relative_name(member.name).partition("/")[2]
                        if kind not in (archives.FILE, archives.DIR):
                            continue
                        info = archives.clean_info(member, f"./{name}/{below}" if below else f"./{name}", kind=kind)
                        out.addfile(info, more.extractfile(member) if kind == archives.FILE else None)
                        count += 1
                        progress.entry()
    except CaiError:
        raise
    except archives.READ_ERRORS as exc:
        raise CaiError(ExitCode.ERROR, "Failed to create archive", f"  {exc}") from exc
    finally:
        progress.finish()
    return count


def _verify_gzip_tar(path: Path) -> None:
    """Read every byte back: a short or corrupt file fails here, before it is renamed into place."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile():
                    handle = archive.extractfile(member)
                    while handle is not None and handle.read(1 << 20):
                        pass
    except archives.READ_ERRORS as exc:
        raise CaiError(ExitCode.ERROR, f"Archive validation failed - archive may be corrupt: {path}", f"  {exc}") from exc


# --- import ----------------------------------------------------------------------------------

def upload_workspace(eng: engine.Engine, container: str, workspace: Path) -> int:
    """Copy the local workspace into a (created) container's workspace volume on a remote engine,
    with import's rules, owned by the agent. Returns the number of entries."""
    source = archives.Source(workspace)
    try:
        plan = _checked_plan(source, [])
        output.info(f"Uploading the workspace to {container} [context: {eng.context}]")
        progress = Progress("Uploading the workspace", plan.total_bytes, len(plan.entries))
        try:
            stream = archives.tar_stream(source, plan, WORKSPACE_PATH.lstrip("/"), progress, owner=AGENT_OWNER)
            engine.put_archive(eng, container, "/", stream)
        finally:
            progress.finish()
    finally:
        source.close()
    return len(plan.entries)


def dry_run(source_path: Path, patterns: Sequence[str]) -> archives.Plan:
    """What an import would restore, checked exactly as a real one; nothing is written anywhere."""
    source = archives.Source(source_path)
    try:
        return _checked_plan(source, patterns)
    finally:
        source.close()


def _checked_plan(source: archives.Source, patterns: Sequence[str]) -> archives.Plan:
    plan = archives.scan(source, patterns)
    reserved = sorted(name for name in plan.top_level() if archives.is_work_dir(name))
    if reserved:
        raise archives.Refused(source.path, archives.shown_name(reserved[0]), "uses a name cai reserves for its work directories")
    return plan


def restore(eng: engine.Engine, volume: str, source_path: Path, *, patterns: Sequence[str]) -> int:
    """Replace the volume's contents with the source's. Returns the number of entries written."""
    source = archives.Source(source_path)
    try:
        plan = _checked_plan(source, patterns)
        if plan.cleared_bits:
            output.warn(f"Cleared setuid, setgid and sticky bits on {plan.cleared_bits} entries")
        with _import_lock(eng, volume):
            _restore_into(eng, volume, source, plan)
    finally:
        source.close()
    return len(plan.entries)


def _restore_into(eng: engine.Engine, volume: str, source: archives.Source, plan: archives.Plan) -> None:
    created = not engine.volume_exists(eng, volume)
    if created:
        engine.ensure_volume(eng, volume)
    helper = None
    work = None
    swap_began = swapping = False  # the journal holds the volume once the swap began
    try:
        _require_no_running_users(eng, volume)
        helper = engine.create_volume_helper(eng, helper_image(eng, needs_shell=True), volume, HELPER_MOUNT,
                                             writable=True, labels=helper_labels("import", volume))
        engine.start_helper(eng, helper)
        _finish_leftovers(eng, volume, helper)
        _check_space(eng, helper, volume, plan)
        work, token = _make_work_dir(eng, helper, volume)
        progress = Progress("Importing", plan.total_bytes, len(plan.entries))
        try:
            stream = archives.tar_stream(source, plan, f"{HELPER_MOUNT.lstrip('/')}/{work}/new", progress)
            engine.put_archive(eng, helper, "/", stream)
        finally:
            progress.finish()
        _require_no_running_users(eng, volume, helper)
        swap_began = swapping = True
        root = plan.root
        attrs = f"{root.uid}:{root.gid} {archives.mode_of(root):o} {int(root.mtime)}" if root is not None else ""
        code = _run_detached(eng, helper, scripts.swap(HELPER_MOUNT, work, token, "swap", attrs))
        swapping = False  # over, one way or the other
        if code != 0:
            rc, log = engine.exec_as_root(eng, helper, scripts.read_file(f"{HELPER_MOUNT}/{work}/log"))
            raise CaiError(ExitCode.ERROR, f"The swap into volume {volume} failed (exit {code})",
                           *(f"  {line}" for line in log.strip().splitlines()[-5:]),
                           f"The next 'cai import' into {volume} finishes it.")
        _forget_work(eng, volume, work)
        _verify(eng, helper, volume, plan)
    except BaseException:
        if created and not swap_began:
            _remove_volume_quietly(eng, volume, helper)
            helper = None
        elif work is not None and not swap_began and helper is not None:
            _discard_quietly(eng, helper, volume, work)
        raise
    finally:
        if helper is not None and not swapping:
            engine.remove_container(eng, helper)
        elif helper is not None:
            output.warn(f"The swap into volume {volume} goes on in helper {helper[:12]}; it finishes on its own")


def _run_detached(eng: engine.Engine, helper: str, argv: list[str]) -> int:
    """Run a root command in the helper, detached, and wait for it however long it takes: only
    each status poll has a socket timeout."""
    exec_id = engine.exec_detached(eng, helper, argv)
    while True:
        running, code = engine.exec_state(eng, exec_id)
        if not running and code is not None:
            return int(code)
        time.sleep(SWAP_POLL_S)


def _finish_leftovers(eng: engine.Engine, volume: str, helper: str) -> None:
    """What an interrupted import left in this volume: its helper is removed (refused while it still
    runs a swap), and its work directory is finished or discarded, with a warning that says which."""
    for other in engine.list_containers(eng, [f"{labels.HELPER_ROLE}=import", f"{labels.HELPER_VOLUME}={volume}"]):
        if other["Id"] == helper:
            continue
        if other.get("State") == "running" and engine.running_exec_ids(eng, other["Id"]):
            raise CaiError(ExitCode.ERROR, f"Another import into volume {volume} is still running (helper {other['Id'][:12]})",
                           "Wait for it to finish, then try again.")
        engine.remove_container(eng, other["Id"])
    rc, listing = engine.exec_as_root(eng, helper, scripts.list_work(HELPER_MOUNT))
    if rc != 0:
        raise CaiError(ExitCode.ERROR, f"Failed to read volume {volume}", f"  {listing.strip()}")
    tokens = _work_records(eng, volume)
    for line in listing.splitlines():
        work, _, phase = line.partition("\t")
        if work not in tokens:
            # Not made by an import from here: the agent's, or another host's. It is only data,
            # and the next swap moves it out with the rest of the old tree.
            continue
        code = _run_detached(eng, helper, scripts.swap(HELPER_MOUNT, work, tokens[work], "finish", ""))
        if code != 0:
            raise CaiError(ExitCode.ERROR, f"Failed to finish an interrupted import into volume {volume} ({work})")
        _forget_work(eng, volume, work)
        if phase == "staged":
            output.warn(f"An earlier import into volume {volume} was interrupted before its swap; its staged data was discarded")
        else:
            output.warn(f"An earlier import into volume {volume} was interrupted during its swap ({phase}); it was finished first")


def _check_space(eng: engine.Engine, helper: str, volume: str, plan: archives.Plan) -> None:
    """The declared sizes must fit in the volume's free space, checked before anything is written."""
    rc, out = engine.exec_as_root(eng, helper, scripts.free_space(HELPER_MOUNT))
    try:
        free = int(out.strip().splitlines()[-1].split()[3]) * 1024
    except (IndexError, ValueError):
        raise CaiError(ExitCode.ERROR, f"Failed to read the free space of volume {volume}", f"  {out.strip()}") from None
    needed = plan.space_needed()
    if needed > free:
        raise CaiError(ExitCode.ERROR, f"Not enough space in volume {volume}: the archive needs about "
                       f"{output.bytes_size(needed)}, {output.bytes_size(free)} is free", "Nothing was written.")


def _require_no_running_users(eng: engine.Engine, volume: str, helper: str | None = None) -> None:
    """An import runs only while nothing else that mounts the volume runs: an agent writing it
    meanwhile could rename the work directory under the helper's feet."""
    users = [c for c in engine.list_containers(eng, []) if c.get("Id") != helper
             and not labels.label(c.get("Labels"), labels.HELPER)  # a leftover helper: see _finish_leftovers
             and c.get("State") in ("running", "paused", "restarting")
             and any(m.get("Name") == volume for m in c.get("Mounts") or ())]
    if users:
        names = ", ".join(sorted((c.get("Names") or ["/?"])[0].lstrip("/") for c in users))
        raise CaiError(ExitCode.ERROR, f"Volume {volume} is in use by a running container: {names}",
                       "Stop it first (cai stop --container NAME); nothing was written.")


def _records_path(eng: engine.Engine, volume: str) -> Path:
    return userfiles.state_dir() / "imports" / f"{eng.context}@{volume}.json"  # `@` is in neither kind of name


def _work_records(eng: engine.Engine, volume: str) -> dict[str, str]:
    """Work directories the imports from here made in this volume, and their tokens."""
    import json

    try:
        data = json.loads(_records_path(eng, volume).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_records(eng: engine.Engine, volume: str, records: dict[str, str]) -> None:
    import json

    path = _records_path(eng, volume)
    if records:
        userfiles.atomic_write(path, json.dumps(records) + "\n", mode=0o600)
    else:
        path.unlink(missing_ok=True)


def _make_work_dir(eng: engine.Engine, helper: str, volume: str) -> tuple[str, str]:
    """A work directory of root's, recorded (with a token only this host knows) before it exists,
    so that an interrupted import is found again, and one planted by the agent never is."""
    work = archives.WORK_PREFIX + secrets.token_hex(8)
    token = secrets.token_hex(16)
    _write_records(eng, volume, {**_work_records(eng, volume), work: token})
    rc, out = engine.exec_as_root(eng, helper, scripts.make_work_dir(HELPER_MOUNT, work, token))
    if rc != 0:
        raise CaiError(ExitCode.ERROR, "Failed to prepare the volume", f"  {out.strip()}")
    return work, token


def _forget_work(eng: engine.Engine, volume: str, work: str) -> None:
    records = _work_records(eng, volume)
    if records.pop(work, None) is not None:
        _write_records(eng, volume, records)


def _discard_quietly(eng: engine.Engine, helper: str, volume: str, work: str) -> None:
    """Drop a work directory whose swap never began; an engine that is gone leaves it to the next import."""
    try:
        rc, _ = engine.exec_as_root(eng, helper, scripts.remove_tree(f"{HELPER_MOUNT}/{work}"), timeout=engine.SLOW_TIMEOUT_S)
        if rc == 0:
            _forget_work(eng, volume, work)
    except CaiError:
        pass


def _remove_volume_quietly(eng: engine.Engine, volume: str, helper: str | None) -> None:
    """A volume this import created, removed again when the import did not get to its swap."""
    try:
        if helper is not None:
            engine.remove_container(eng, helper)
        engine.remove_volume(eng, volume)
    except CaiError:
        pass


def _verify(eng: engine.Engine, helper: str, volume: str, plan: archives.Plan) -> None:
    """The volume, read back through the engine, against the archive: paths, types, sizes, link
    targets, modes and owners, and hard-link groups."""
    try:
        with engine_tar(engine.get_archive(eng, helper, f"{HELPER_MOUNT}/.")) as tar:
            actual, root, links = archives.actual_manifest(tar)
    except CaiError:
        raise
    except archives.READ_ERRORS as exc:
        raise CaiError(ExitCode.ERROR, f"Failed to read volume {volume} back", f"  {exc}") from exc
    difference = archives.first_difference(plan, actual, links)
    if difference is None and plan.root is not None and root is not None:
        want = (archives.mode_of(plan.root), plan.root.uid, plan.root.gid)
        have = (archives.mode_of(root), root.uid, root.gid)
        if want != have:
            difference = f"the volume's root is {have[0]:o} {have[1]}:{have[2]}, the archive says {want[0]:o} {want[1]}:{want[2]}"
    if difference is not None:
        raise CaiError(ExitCode.ERROR, f"Volume {volume} does not match the archive after the import: {difference}")


@contextlib.contextmanager
def _import_lock(eng: engine.Engine, volume: str) -> Iterator[None]:
    """One import per volume and context from this host at a time."""
    lock = userfiles.file_lock(userfiles.state_dir() / "locks" / f"import-{eng.context}-{volume}.lock", timeout=1.0)
    try:
        lock.__enter__()
    except CaiError:
        raise CaiError(ExitCode.ERROR, f"Another import into volume {volume} is running") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def leftover_imports(eng: engine.Engine) -> list[dict[str, str]]:
    """Imports that are running or were interrupted: import helpers still on the engine, and work
    directories this host recorded and never saw finished (the helper may be gone with the engine)."""
    found = []
    for helper in engine.list_containers(eng, [f"{labels.HELPER_ROLE}=import"]):
        found.append({"volume": (helper.get("Labels") or {}).get(labels.HELPER_VOLUME, ""),
                      "helper": str(helper["Id"])[:12], "state": str(helper.get("State", "")), "work": ""})
    prefix = f"{eng.context}@"
    for path in sorted((userfiles.state_dir() / "imports").glob(f"{prefix}*.json")):
        volume = path.name[len(prefix):-len(".json")]
        for work in _work_records(eng, volume):
            found.append({"volume": volume, "helper": "", "state": "recorded", "work": work})
    return found

# --- what to export or import into -----------------------------------------------------------


@dataclass(frozen=True)
class VolumeTarget:
    engine: engine.Engine
    volume: str
    workspace: Path
    container: str | None  # the managed container, when it was named
    layers: config.Layers  # with --config, which also decides the excludes


def resolve_target(*, explicit_context: str | None, container: str | None, volume: str | None,
                   workspace: str | None, config_path: str | None) -> VolumeTarget:
    """`--container` (its labels decide), else the workspace (or cwd) and the usual volume rules."""
    if container is not None and workspace is not None:
        raise CaiError(ExitCode.ERROR, "--container and --workspace are mutually exclusive")
    if container is not None and volume is not None:
        raise CaiError(ExitCode.ERROR, "--container and --data-volume are mutually exclusive")
    explicit_config = Path(os.path.expanduser(config_path)) if config_path else None
    if explicit_config is not None and not explicit_config.is_file():
        raise CaiError(ExitCode.ERROR, f"Config file not found: {explicit_config}")
    if container is not None:
        found = resolution.find_managed(labels.validate_container_name(container), explicit_context=explicit_context,
                                        workspace=Path.cwd(), explicit_config=explicit_config)
        return target_of(found, explicit_config)
    ws = labels.resolve_workspace(workspace)
    layers = config.Layers(ws, explicit_config)
    try:
        name = layers.volume(volume)
    except CaiError as exc:  # as the original: what was wrong, then which step failed
        raise CaiError(exc.code, exc.message, *exc.extra, "[ERROR] Failed to resolve data volume") from None
    return VolumeTarget(engine.Engine(contexts.resolve(explicit_context, layers)), name, ws, None, layers)


def target_of(container: engine.Container, explicit_config: Path | None = None) -> VolumeTarget:
    """The volume and workspace a managed container's labels name (the caller checked it is managed)."""
    workspace = labels.label(container.labels, labels.WORKSPACE)
    if not workspace:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is missing workspace label")
    volume = labels.label(container.labels, labels.DATA_VOLUME)
    if not volume:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is missing data-volume label")
    return VolumeTarget(engine.Engine(container.context), volume, Path(workspace), container.name,
                        config.Layers(Path(workspace), explicit_config))


def export_target(target: VolumeTarget, destination: str | None, *, use_excludes: bool,
                  extra: Sequence[tuple[str, str]] = ()) -> Path:
    """Export with the config's excludes; returns the absolute path written."""
    path = output_path(destination, Path(os.getcwd()), datetime.now())
    excludes = target.layers.excludes() if use_excludes else []
    export(target.engine, target.volume, path, source=ExportSource(target.container), excludes=excludes, extra=extra)
    return path
