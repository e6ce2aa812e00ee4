"""Export and import of a data volume, streamed through the engine API.

Nothing touches a host path on the engine's side, so both work on a remote context: export reads
the archive endpoint (of the managed container, or of a helper container that mounts only the
volume and is never started), and the host filters the excludes and writes the gzip tar. Import
checks every entry on the host before anything is written, sends a plain tar into a staging
directory of the volume through a helper, and swaps it in only when it is all there.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from cai import engine, labels, output
from cai.errors import CaiError, ExitCode

VOLUME_MOUNT = "/mnt/agent-data"
HELPER_MOUNT = "/data"
STAGING = ".cai-import-staging"
PRIVATE_PATTERNS = ("shell/bashrc.d/*.priv.*",)
SECRET_PATTERNS = ("*.priv.*", ".credentials.json", "credentials.json", "auth.json", ".netrc", "*.pem", "*.key",
                   "id_rsa", "id_ecdsa", "id_ed25519")


# --- names and patterns ----------------------------------------------------------------------


def normalize_patterns(excludes: Iterable[str]) -> list[str]:
    """As the original: one leading `./`, then one leading `/`, stripped; empty ones dropped."""
    patterns = []
    for pattern in excludes:
        pattern = pattern[2:] if pattern.startswith("./") else pattern
        pattern = pattern[1:] if pattern.startswith("/") else pattern
        if pattern:
            patterns.append(pattern)
    return patterns


def is_excluded(name: str, patterns: Sequence[str]) -> bool:
    """GNU tar's `--exclude` for member names: unanchored (any run of path components may match),
    `*` crosses `/`, and a match on a directory covers everything below it."""
    parts = [p for p in name.split("/") if p and p != "."]
    for start in range(len(parts)):
        for end in range(start + 1, len(parts) + 1):
            candidate = "/".join(parts[start:end])
            if any(fnmatch.fnmatchcase(candidate, pattern) for pattern in patterns):
                return True
    return False


def relative_name(name: str) -> str:
    """`./a/b` and `a/b` → `a/b`; `.` and `./` → ``."""
    while name.startswith("./"):
        name = name[2:]
    return "" if name in (".", "") else name.rstrip("/")


def hostile_reason(member: tarfile.TarInfo) -> str | None:
    """Why an archive entry may not be restored, or None when it is a plain file or directory."""
    name = member.name
    if name.startswith("/"):
        return "absolute path"
    if ".." in name.split("/"):
        return "path with '..'"
    if member.issym():
        return f"symlink (to {member.linkname})"
    if member.islnk():
        return f"hard link (to {member.linkname})"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    if not (member.isfile() or member.isdir()):
        return "unsupported entry type"
    return None


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


# --- progress --------------------------------------------------------------------------------


class Progress:
    """Bytes moved so far, redrawn on stderr at most 10 times a second; only on a TTY."""

    def __init__(self, verb: str, total: int | None = None) -> None:
        self.verb, self.total, self.done = verb, total, 0
        self.enabled = output.isatty() and sys.stderr.isatty()
        self._drawn = 0.0

    def add(self, count: int) -> None:
        self.done += count
        if self.enabled and time.monotonic() - self._drawn > 0.1:
            self._draw()

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        if self.total:
            filled = int(30 * min(self.done, self.total) / self.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {output.bytes_size(self.done)} / {output.bytes_size(self.total)}"
        else:
            bar = output.bytes_size(self.done)
        sys.stderr.write(f"\r{self.verb}: {bar}\033[K")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


class _ChunkReader(io.RawIOBase):
    """A readable file over the engine's byte chunks, counting what passes."""

    def __init__(self, chunks: Iterator[bytes], progress: Progress) -> None:
        self._chunks, self._buffer, self._progress = chunks, b"", progress

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            self._progress.add(len(self._buffer))
        count = min(len(target), len(self._buffer))
        target[:count], self._buffer = self._buffer[:count], self._buffer[count:]
        return count


# --- helpers ---------------------------------------------------------------------------------


def _helper_image(eng: engine.Engine) -> str:
    if eng.image_exists(labels.DEFAULT_IMAGE):
        return labels.DEFAULT_IMAGE
    raise CaiError(ExitCode.ERROR, f"No local image for the helper container: {labels.DEFAULT_IMAGE}",
                   "Build it with: cai image build")


def _require_volume(eng: engine.Engine, volume: str) -> None:
    if not engine.volume_exists(eng, volume):
        raise CaiError(ExitCode.ERROR, f"Volume does not exist: {volume}")


# --- export ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSource:
    """Where the volume can be read: the managed container (at VOLUME_MOUNT) or a helper."""

    container: str | None


def export(eng: engine.Engine, volume: str, target: Path, *, source: ExportSource, excludes: Sequence[str]) -> int:
    """Write the volume as a gzip tar at `target` (atomically). Returns the number of entries."""
    _require_volume(eng, volume)
    output.info(f"Exporting volume '{volume}' to: {target}")
    patterns = normalize_patterns(excludes)
    helper = None
    if source.container is None:
        helper = engine.create_volume_helper(eng, _helper_image(eng), volume, HELPER_MOUNT, writable=False,
                                             labels={labels.HELPER: "export"})
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            container, path = (source.container, VOLUME_MOUNT) if helper is None else (helper, HELPER_MOUNT)
            count = _copy_filtered(engine.get_archive(eng, container, f"{path}/."), raw, patterns)
        _verify_gzip_tar(temp)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        if helper is not None:
            engine.remove_container(eng, helper)
    return count


def _copy_filtered(chunks: Iterator[bytes], raw: IO[bytes], patterns: Sequence[str]) -> int:
    progress = Progress("Exporting")
    count = 0
    try:
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(iter(chunks), progress), 1 << 16), mode="r|") as src, \
                tarfile.open(fileobj=raw, mode="w|gz", format=tarfile.PAX_FORMAT) as out:
            for member in src:
                rel = relative_name(member.name)
                if rel and is_excluded(rel, patterns):
                    continue
                member.name = f"./{rel}" if rel else "."
                out.addfile(member, src.extractfile(member) if member.isfile() else None)
                count += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
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
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CaiError(ExitCode.ERROR, f"Archive validation failed - archive may be corrupt: {path}", f"  {exc}") from exc


# --- import ----------------------------------------------------------------------------------

_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def _read_archive(source: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                yield member, archive.extractfile(member) if member.isfile() else None
    except _READ_ERRORS as exc:
        raise CaiError(ExitCode.ERROR, f"Archive is corrupt or truncated: {source}", f"  {exc}", "Nothing was written.") from exc


def _read_directory(source: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    packer = tarfile.TarFile(fileobj=io.BytesIO(), mode="w")
    for root, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            info = packer.gettarinfo(str(path), arcname=str(path.relative_to(source)))
            if info is None:  # a socket: tarfile has no type for it
                info = tarfile.TarInfo(str(path.relative_to(source)))
                info.type = b"?"
            yield info, path.open("rb") if info.isfile() else None


def entries(source: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    if source.is_dir():
        return _read_directory(source)
    if not source.is_file():
        raise CaiError(ExitCode.ERROR, f"Import source not found: {source}")
    return _read_archive(source)


def check_source(source: Path) -> int:
    """Pass one: every entry is checked and every byte read, before anything is written."""
    count = 0
    try:
        for member, handle in entries(source):
            reason = hostile_reason(member)
            if reason is not None:
                raise CaiError(ExitCode.ERROR, f"Refusing to import {source}: entry '{output.shown(member.name)}' is a {reason}",
                               "Nothing was written.")
            if handle is not None:
                while handle.read(1 << 20):
                    pass
                handle.close()
            count += 1
    except _READ_ERRORS as exc:
        raise CaiError(ExitCode.ERROR, f"Archive is corrupt or truncated: {source}", f"  {exc}", "Nothing was written.") from exc
    return count


def planned(source: Path, patterns: Sequence[str]) -> list[tarfile.TarInfo]:
    kept = []
    for member, handle in entries(source):
        if handle is not None:
            handle.close()
        rel = relative_name(member.name)
        if rel and not is_excluded(rel, patterns):
            kept.append(member)
    return kept


def _pack(source: Path, patterns: Sequence[str], into: IO[bytes]) -> tuple[int, tarfile.TarInfo | None]:
    """Pass two: the kept entries as a plain tar under STAGING/; returns (count, the root entry)."""
    root = None
    count = 0
    with tarfile.open(fileobj=into, mode="w", format=tarfile.PAX_FORMAT) as out:
        out.addfile(_dir_info(STAGING))
        for member, handle in entries(source):
            rel = relative_name(member.name)
            if not rel:
                root = member
            elif not is_excluded(rel, patterns):
                member.name = f"{STAGING}/{rel}"
                out.addfile(member, handle)
                count += 1
            if handle is not None:
                handle.close()
    into.seek(0)
    return count, root


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, int(time.time())
    return info


_SWAP_SCRIPT = (
    'set -e; cd "$1"; stage="$2"; '
    'find . -mindepth 1 -maxdepth 1 ! -name "$stage" -exec rm -rf {} +; '
    'find "$stage" -mindepth 1 -maxdepth 1 -exec mv {} . \\;; rmdir "$stage"; '
    'if [ -n "$3" ]; then chown "$3" .; chmod "$4" .; fi'
)


def restore(eng: engine.Engine, volume: str, source: Path, *, patterns: Sequence[str]) -> int:
    """Replace the volume's contents with the source's. Returns the number of entries written."""
    check_source(source)
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as packed:
        count, root = _pack(source, patterns, packed)
        engine.ensure_volume(eng, volume)
        helper = engine.create_volume_helper(eng, _helper_image(eng), volume, HELPER_MOUNT, writable=True,
                                             labels={labels.HELPER: "import"})
        try:
            engine.start_helper(eng, helper)
            rc, out = engine.exec_as_root(eng, helper, ["rm", "-rf", f"{HELPER_MOUNT}/{STAGING}"])
            if rc != 0:
                raise CaiError(ExitCode.ERROR, "Failed to prepare the volume", f"  {out.strip()}")
            engine.put_archive(eng, helper, HELPER_MOUNT, packed)
            owner = f"{root.uid}:{root.gid}" if root is not None else ""
            mode = f"{stat.S_IMODE(root.mode):o}" if root is not None else ""
            rc, out = engine.exec_as_root(eng, helper, ["sh", "-c", _SWAP_SCRIPT, "_", HELPER_MOUNT, STAGING, owner, mode])
            if rc != 0:
                raise CaiError(ExitCode.ERROR, "Failed to swap the imported data into the volume", f"  {out.strip()}")
        finally:
            engine.remove_container(eng, helper)
    return count


# --- what to export or import into -----------------------------------------------------------


@dataclass(frozen=True)
class VolumeTarget:
    engine: engine.Engine
    volume: str
    workspace: Path
    container: str | None  # the managed container, when it was named
    config: Path | None = None  # --config, which also decides the excludes


def resolve_target(*, explicit_context: str | None, container: str | None, volume: str | None,
                   workspace: str | None, config_path: str | None) -> VolumeTarget:
    """`--container` (its labels decide), else the workspace (or cwd) and the usual volume rules."""
    from cai import config

    if container is not None and workspace is not None:
        raise CaiError(ExitCode.ERROR, "--container and --workspace are mutually exclusive")
    if container is not None and volume is not None:
        raise CaiError(ExitCode.ERROR, "--container and --data-volume are mutually exclusive")
    explicit_config = Path(os.path.expanduser(config_path)) if config_path else None
    if explicit_config is not None and not explicit_config.is_file():
        raise CaiError(ExitCode.ERROR, f"Config file not found: {explicit_config}")
    if container is not None:
        from cai import containers

        found = containers.find_managed(labels.validate_container_name(container), explicit_context=explicit_context,
                                        workspace=Path.cwd(), explicit_config=explicit_config)
        return target_of(found, explicit_config)
    ws = labels.resolve_workspace(workspace)
    name = config.resolve_volume(volume, ws, explicit_config)
    return VolumeTarget(engine.Engine(engine.resolve_context(explicit_context, ws, explicit_config)), name, ws, None,
                        explicit_config)


def target_of(container: engine.Container, explicit_config: Path | None = None) -> VolumeTarget:
    """The volume and workspace a managed container's labels name (the caller checked it is managed)."""
    workspace = labels.label(container.labels, labels.WORKSPACE)
    if not workspace:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is missing workspace label")
    volume = labels.label(container.labels, labels.DATA_VOLUME)
    if not volume:
        raise CaiError(ExitCode.ERROR, f"Container {container.name} is missing data-volume label")
    return VolumeTarget(engine.Engine(container.context), volume, Path(workspace), container.name, explicit_config)


def export_target(target: VolumeTarget, destination: str | None, *, use_excludes: bool) -> Path:
    """Export with the config's excludes; returns the absolute path written."""
    from cai import config

    path = output_path(destination, Path(os.getcwd()), datetime.now())
    excludes = config.resolve_excludes(target.workspace, target.config) if use_excludes else []
    export(target.engine, target.volume, path, source=ExportSource(target.container), excludes=excludes)
    return path
