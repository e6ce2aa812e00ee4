"""`cai cp`: a tar stream over the container's ssh login, either way.

In: the local tree is read as import reads a directory (archives.py: no devices, no links below
links, files opened without following links) and sent with the agent as owner; the container's
own `tar -x` runs as the agent, so a link the agent planted on the way can only lead where the
agent may write anyway. Out: whatever answers as the agent's `tar -c` chooses every byte, so
cai.landing parses it with its own rules (not tarfile's filter) into a directory cai makes beside
DEST, and moves that onto DEST only when the whole stream was SRC's own files, directories and
links that stay inside.

A stopped container has no agent and no sshd: there cai uses the engine's archive API, but only
after it has seen, component by component, that no directory on the way to DEST is a link. In the
container's own root nothing can race that check while it is stopped, so the engine extracts there
as root. A mount (the data volume, the workspace) may be another running container's too, which
can swap a checked directory for a link before the engine writes: there the tree is staged in a
throwaway helper whose only mount is that one and copied by the agent's uid (root only for `-a`,
which keeps the archive's owners), so a swapped link leads into the volume or the helper, never
into the stopped container's root. `-` is a tar stream on stdin or stdout, passed through as it is.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

from cai import archives, containers, engine, landing, output, ssh
from cai.errors import CaiError, ExitCode
from cai.volumes import AGENT_OWNER
# Exit codes of the probe: what the container path is, seen by the agent.
_IS_DIR, _IS_OTHER, _MISSING, _NO_PARENT = 20, 21, 22, 23
_PROBE = ('[ -d "$1" ] && exit 20; { [ -e "$1" ] || [ -L "$1" ]; } && exit 21; '
          '[ -d "$(dirname -- "$1")" ] && exit 22; exit 23')
_RECEIVE = 'cd -- "$1" && exec tar -x --no-same-owner -f -'
_STAGE = "cai-stage"  # in a copy helper's own root
_TAIL_LIMIT = 1 << 20  # what may follow a tar's end: its record padding is 10 KiB at most
_TAIL_SECONDS = 10
_SEND = 'cd -- "$1" && exec tar -c -f - -- "$2"'


def _script(script: str, *args: str) -> str:
    """A command line for the agent's shell: `sh -c SCRIPT` in the workspace, its arguments quoted
    (no login shell: its startup files could print into the stream)."""
    return f"cd {ssh.WORKDIR} && exec sh -c {shlex.quote(script)} cai-cp " + " ".join(shlex.quote(a) for a in args)


def _probe(eng: engine.Engine, container: engine.Container, path: str) -> int:
    """What `path` is in the container; the connection is made (and shared) here, with cai's
    retries and key repair, so the transfer that follows finds it open. Its ssh gets /dev/null as
    stdin (`cai cp - :dir` keeps every byte of its stream for the transfer) and as stderr: only
    the agent's shell writes there (ssh's own words go to cai's log), and its bytes must not
    reach the user's terminal."""
    import sys

    kept_in, kept_err = os.dup(0), os.dup(2)
    nothing_in, nothing_out = os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_WRONLY)
    messages = sys.stderr
    sys.stderr = os.fdopen(os.dup(kept_err), "w", errors="backslashreplace")  # cai's own words still show
    try:
        os.dup2(nothing_in, 0)
        os.dup2(nothing_out, 2)
        code = containers.connect(eng, container, _script(_PROBE, path), tty=None, shared=True)
    finally:
        os.dup2(kept_in, 0)
        os.dup2(kept_err, 2)
        sys.stderr.close()
        sys.stderr = messages
        for fd in (kept_in, kept_err, nothing_in, nothing_out):
            os.close(fd)
    if code not in (_IS_DIR, _IS_OTHER, _MISSING, _NO_PARENT):
        raise CaiError(ExitCode.ERROR, f"Could not look at {output.shown(':' + path)} in {container.name} (exit {code})")
    return code


def _session(container: engine.Container, remote: str, *, send: bool) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """ssh with a pipe for the stream (its stdin to send, its stdout to receive); its stderr and
    the remote's go to a private file."""
    endpoint = containers.endpoint(container)
    directory = ssh.control_dir() if ssh.multiplexing() else None
    sharing = ssh.multiplex_options(directory, endpoint) if directory is not None else []
    errors = tempfile.TemporaryFile()
    argv = [*ssh.base_argv(endpoint), *(sharing or ssh.NOT_SHARED), "-T", "-o", "BatchMode=yes", ssh.HOST, remote]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE if send else subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL if send else subprocess.PIPE, stderr=errors,
                             env=ssh.session_env(endpoint))
    return child, errors


def _finish(child: subprocess.Popen[bytes], errors: IO[bytes], what: str, timeout: float = 60) -> None:
    try:
        rc = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        rc = child.wait()
    if rc == 0:
        return
    # The agent writes there too: its last 64 KiB only, control characters made visible.
    errors.seek(max(0, errors.seek(0, os.SEEK_END) - (1 << 16)))
    said = [f"  {output.shown(line)[:500]}" for line in errors.read().decode(errors="replace").splitlines()
            if line.strip()][-5:]
    code = ExitCode.SSH_CONNECT_FAILED if rc == 255 else ExitCode.ERROR
    raise CaiError(code, f"Copy failed: {what} (exit {rc})", *said)


# --- in --------------------------------------------------------------------------------------


class _Local:
    """SRC on this host, reached without a link that root does not own: in the workspace, the
    agent may have made `notes.txt -> ~/.ssh/id_ed25519` or swapped `docs` for a link to ~/.ssh
    for the user to send. Everything is opened from the descriptor of SRC's directory."""

    def __init__(self, local: str) -> None:
        from cai import local_paths

        self.shown = local
        parent, self.name = local_paths.split(local)
        if not self.name:  # "/"
            parent, self.name = "/", "."
        self.parent_fd = local_paths.open_directory(parent)
        if self.parent_fd is None:
            raise CaiError(ExitCode.ERROR, f"No such file or directory: {output.shown(local)}")
        try:
            kind = local_paths.kind_in(self.parent_fd, self.name, local)
        except BaseException:
            self.close()
            raise
        if kind not in ("dir", "file"):
            self.close()
            raise CaiError(ExitCode.ERROR, f"No such file or directory: {output.shown(local)}" if kind is None
                           else f"Not a regular file or directory: {output.shown(local)}")
        self.is_dir = kind == "dir"

    def tree(self) -> archives.Source:
        from cai import local_paths

        top = local_paths.open_directory_in(self.parent_fd, self.name, self.shown)
        return archives.Source(Path(self.shown), top_fd=top)

    def open_file(self) -> IO[bytes]:
        from cai import local_paths

        return local_paths.open_file_in(self.parent_fd, self.name, self.shown)

    def close(self) -> None:
        if self.parent_fd is not None:
            os.close(self.parent_fd)
            self.parent_fd = None


def _destination(container: engine.Container, path: str, kind: int, source_is_dir: bool, given_name: str) -> tuple[str, str]:
    """(directory, name) for what goes in, as cp decides: into an existing directory, else as
    the named entry (a trailing / or a missing parent is an error, a directory never replaces a file)."""
    if kind == _IS_DIR:
        return path, given_name
    if path.endswith("/") or kind == _NO_PARENT:
        raise CaiError(ExitCode.ERROR, f"No such directory in {container.name}: {output.shown(':' + path)}")
    if kind == _IS_OTHER and source_is_dir:
        raise CaiError(ExitCode.ERROR, f"Cannot copy a directory over the file {output.shown(':' + path)}")
    return posixpath.dirname(path) or ".", posixpath.basename(path)


def copy_in(eng: engine.Engine, container: engine.Container, local: str, path: str, *, keep_owners: bool = False) -> int:
    """`local` is a path, or "-" for a tar stream on stdin (extracted by the agent's tar as is)."""
    path = path or "."
    if not container.running:
        return _copy_in_stopped(eng, container, local, path, keep_owners)
    if keep_owners:
        raise CaiError(ExitCode.ERROR, "-a needs a stopped container: only there may root write without the agent racing it",
                       f"Stop it first (cai stop --container {container.name}), or copy without -a (files become the agent's)")
    source = None if local == "-" else _Local(local)
    try:
        kind = _probe(eng, container, path)
        if source is None:
            if kind != _IS_DIR:
                raise CaiError(ExitCode.ERROR, f"No such directory in {container.name}: {output.shown(':' + path)}",
                               "A tar stream goes into a directory")
            directory, name = path, ""
        else:
            directory, name = _destination(container, path, kind, source.is_dir, os.path.basename(os.path.abspath(local)))
        child, errors = _session(container, _script(_RECEIVE, directory), send=True)
        count = 0
        try:
            if source is None:
                count = _pass_through(os.fdopen(0, "rb", closefd=False), child.stdin)
            elif source.is_dir:
                count = _send_tree(source, name, child.stdin)
            else:
                count = _send_file(source, name, child.stdin)
        except BrokenPipeError:
            pass  # the remote side ended: its own words are in `errors`
        finally:
            try:
                child.stdin.close()
            except BrokenPipeError:
                pass
    finally:
        if source is not None:
            source.close()
    _finish(child, errors, f"{output.shown(local)} → {container.name}:{output.shown(path)}")
    return count


def _pass_through(stream: IO[bytes], sink: IO[bytes]) -> int:
    """Bytes as they come; the count is of bytes, not entries (cai does not read the stream)."""
    total = 0
    while chunk := stream.read(1 << 16):
        sink.write(chunk)
        total += len(chunk)
    return total


def _walk(eng: engine.Engine, container: engine.Container, path: str) -> int:
    """What the absolute `path` is in a stopped container, having refused a link on the way."""
    current = ""
    parts = [part for part in path.split("/") if part]
    for index, part in enumerate(parts):
        current += "/" + part
        stat = engine.path_stat(eng, container.id, current)
        if stat is None:
            return _MISSING if index == len(parts) - 1 else _NO_PARENT
        if stat["mode"] & engine.GO_MODE_SYMLINK:
            raise CaiError(ExitCode.ERROR, f"Refused: {container.name}:{output.shown(current)} is a link "
                           f"(to {output.shown(stat['link_target'])}), and cai writes through none",
                           "Remove the link in the container, or name the real directory")
        if index == len(parts) - 1:
            return _IS_DIR if stat["mode"] & engine.GO_MODE_DIR else _IS_OTHER
    return _IS_DIR  # "/" itself


def _copy_in_stopped(eng: engine.Engine, container: engine.Container, local: str, path: str, keep_owners: bool) -> int:
    if local == "-":
        raise CaiError(ExitCode.ERROR, f"A tar stream goes into a running container only; {container.name} is {container.status}",
                       "cai would have to check every entry as root: start it (cai run), or copy files by path")
    source = _Local(local)
    try:
        return _copy_local_in_stopped(eng, container, source, local, path, keep_owners)
    finally:
        source.close()


def _copy_local_in_stopped(eng: engine.Engine, container: engine.Container, source: _Local, local: str, path: str,
                           keep_owners: bool) -> int:
    absolute = posixpath.normpath(posixpath.join(ssh.WORKDIR, path))
    kind = _walk(eng, container, absolute)
    named = absolute + "/" if path.endswith("/") and absolute != "/" else absolute  # a trailing / names a directory
    directory, name = _destination(container, named, kind, source.is_dir, os.path.basename(os.path.abspath(local)))
    # The engine extracts as root and follows what is already there: so only a new entry, or a
    # plain file over a plain file, never into a tree the agent may have filled with links.
    final = posixpath.join(directory, name)
    there = _walk(eng, container, final) if kind == _IS_DIR else kind
    if there == _IS_DIR or (there == _IS_OTHER and source.is_dir):
        raise CaiError(ExitCode.ERROR, f"{container.name}:{output.shown(final)} exists, and {container.name} is stopped",
                       "Into a stopped container cai copies only what is new there (root would write below what "
                       "the agent left); start it, or remove that path first")
    owner = None if keep_owners else AGENT_OWNER
    mount = engine.mount_holding(eng, container.id, final)
    # In the container's own root nothing can move while it is stopped, so the engine extracts
    # there as root. A mount (the data volume, the workspace) may be another running container's
    # too, which can swap a directory on the way for a link between the check above and the
    # engine's write: there the copy goes through a helper that can reach nothing else.
    prefix = f"{_STAGE}/{name}" if mount is not None else name
    if source.is_dir:
        tree = source.tree()
        try:
            plan = archives.scan(tree, [])
            if plan.cleared_bits:
                output.warn(f"Cleared setuid, setgid and sticky bits on {plan.cleared_bits} entries")
            progress = archives.Progress("Copying", plan.total_bytes, len(plan.entries))
            try:
                _put(eng, container, directory, archives.tar_stream(tree, plan, prefix, progress, owner=owner), mount,
                     final, keep_owners)
            finally:
                progress.finish()
        finally:
            tree.close()
        return len(plan.entries) + 1
    import io

    buffer = io.BytesIO()
    _send_file(source, prefix, buffer, owner=owner)
    _put(eng, container, directory, buffer.getvalue(), mount, final, keep_owners)
    return 1


def _put(eng: engine.Engine, container: engine.Container, directory: str, data: Any, mount: dict[str, Any] | None,
         final: str, keep_owners: bool) -> None:
    if mount is None:
        engine.put_archive(eng, container.id, directory, data)
        return
    from cai import container_scripts, volumes

    if keep_owners:
        # Root keeps the owners, and cp -a writes through a link already at the destination:
        # only where no other container can plant one.
        sharing = engine.others_mounting(eng, mount, container.id)
        if sharing:
            raise CaiError(ExitCode.ERROR, f"-a into {output.shown(final)} is refused: {', '.join(sharing)} also "
                           f"mount{'s' if len(sharing) == 1 else ''} it and could plant a link for root to write through",
                           "Copy without -a (the files become the agent's), or into the container's own root")
    engine.copy_through_helper(
        eng, container.image_id, mount, data, final,
        container_scripts.copy_staged(f"/{_STAGE}/{posixpath.basename(final)}", final, keep_owners=keep_owners),
        as_root=keep_owners, labels=volumes.helper_labels("cp", str(mount.get("Name") or mount.get("Source"))))


def _send_tree(local: _Local, name: str, sink: IO[bytes]) -> int:
    source = local.tree()
    try:
        plan = archives.scan(source, [])
        if plan.cleared_bits:
            output.warn(f"Cleared setuid, setgid and sticky bits on {plan.cleared_bits} entries")
        for chunk in archives.tar_stream(source, plan, name, owner=AGENT_OWNER):
            sink.write(chunk)
    finally:
        source.close()
    return len(plan.entries) + 1


def _send_file(local: _Local, name: str, sink: IO[bytes], owner: tuple[int, int] | None = AGENT_OWNER) -> int:
    """One file as a tar; `owner` None keeps the file's own (`-a`)."""
    with local.open_file() as handle, tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        found = os.fstat(handle.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = found.st_size, int(found.st_mtime), found.st_mode & 0o777
        info.uid, info.gid = owner or (found.st_uid, found.st_gid)
        tar.addfile(info, handle)
    return 1


# --- out -------------------------------------------------------------------------------------


def copy_out(eng: engine.Engine, container: engine.Container, path: str, local: str) -> int:
    """`local` is a path, or "-" for the tar stream on stdout, as the container gives it."""
    clean = posixpath.normpath(posixpath.join(ssh.WORKDIR, path))
    directory, member = posixpath.split(clean)
    if not member:
        raise CaiError(ExitCode.ERROR, "Copying the container's whole file system is not supported; name a path below /")
    stopped = not container.running
    if stopped:
        found = engine.path_stat(eng, container.id, clean) is not None
    else:
        found = _probe(eng, container, clean) not in (_MISSING, _NO_PARENT)
    if not found:
        raise CaiError(ExitCode.ERROR, f"No such file or directory in {container.name}: {output.shown(':' + path)}")
    if local == "-":
        return _stream_out(eng, container, clean, directory, member, stopped)
    into_fd, into, name = _local_destination(local, member)
    what = f"{container.name}:{output.shown(path)} → {output.shown(local)}"
    if stopped:  # the engine reads it as root, within the container's root; cai judges it here
        from cai import volumes

        return landing.land(volumes.engine_stream(engine.get_archive(eng, container.id, clean)), member, into_fd, into,
                            name, sender=f"what {container.name} holds")
    child, errors = _session(container, _script(_SEND, directory, member), send=False)

    def sent_whole() -> None:
        _drain_tail(child, container.name)
        _finish(child, errors, what)

    try:
        return landing.land(child.stdout, member, into_fd, into, name, sender=f"what {container.name} sent",
                            confirm=sent_whole)
    except landing.NotATar:
        _finish(child, errors, what, timeout=10)  # ssh's or tar's own failure says more than the cut stream
        raise
    except CaiError:
        if child.poll() is None:
            child.kill()
        child.wait()
        raise
    finally:
        child.stdout.close()


def _local_destination(local: str, member: str) -> tuple[int, str, str]:
    """(directory descriptor, its name for messages, entry name) for DEST, as cp decides: inside
    an existing directory under SRC's name, else as DEST's own name. Reached without following a
    link that root does not own: the agent may have planted `deploy -> /etc/cron.d` in the
    workspace where the user copies to."""
    from cai import local_paths

    parent, last = local_paths.split(local)
    parent_fd = local_paths.open_directory(parent)
    if parent_fd is None:
        raise CaiError(ExitCode.ERROR, f"No such directory: {output.shown(parent)}")
    if not last:  # "/"
        return parent_fd, parent, member
    try:
        kind = local_paths.kind_in(parent_fd, last, local)
        if kind != "dir":
            if local.endswith("/"):
                raise CaiError(ExitCode.ERROR, f"No such directory: {output.shown(local)}")
            return parent_fd, parent, last
        inside = local_paths.open_directory_in(parent_fd, last, local)
    except BaseException:
        os.close(parent_fd)
        raise
    os.close(parent_fd)
    return inside, local, member


def _drain_tail(child: subprocess.Popen[bytes], name: str) -> None:
    """tar pads its end to a whole record: read that, and no endless or stalled tail, so that tar
    and ssh end."""
    import select

    deadline, tail, fd = time.monotonic() + _TAIL_SECONDS, 0, child.stdout.fileno()
    while tail <= _TAIL_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        tail += len(chunk)
    child.kill()
    child.wait()
    raise CaiError(ExitCode.ERROR, f"Refused what {name} sent: more than {_TAIL_LIMIT} bytes, or {_TAIL_SECONDS} s, "
                   "after the archive's end", "Nothing was written.")


def _stream_out(eng: engine.Engine, container: engine.Container, clean: str, directory: str, member: str,
                stopped: bool) -> int:
    sink = os.fdopen(1, "wb", closefd=False)
    if stopped:
        total = 0
        for chunk in engine.get_archive(eng, container.id, clean):
            sink.write(chunk)
            total += len(chunk)
        sink.flush()
        return total
    child, errors = _session(container, _script(_SEND, directory, member), send=False)
    try:
        total = _pass_through(child.stdout, sink)
        sink.flush()
    finally:
        child.stdout.close()
    _finish(child, errors, f"{container.name}:{output.shown(clean)} → stdout")
    return total
