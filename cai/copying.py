"""`cai cp`: a tar stream over the container's ssh login, either way.

In: the local tree is read as import reads a directory (archives.py: no devices, no links below
links, files opened without following links) and sent with the agent as owner; the container's
own `tar -x` runs as the agent, so a link the agent planted on the way can only lead where the
agent may write anyway. Out: the agent's `tar -c`, read here with tarfile's `data` filter (PEP 706)
and its top-level name changed to DEST's: nothing lands outside DEST, no absolute or `..` names,
no link that leaves it, no device, no setuid bit.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from cai import archives, containers, engine, output, ssh
from cai.errors import CaiError, ExitCode
from cai.volumes import AGENT_OWNER
# Exit codes of the probe: what the container path is, seen by the agent.
_IS_DIR, _IS_OTHER, _MISSING, _NO_PARENT = 20, 21, 22, 23
_PROBE = ('[ -d "$1" ] && exit 20; { [ -e "$1" ] || [ -L "$1" ]; } && exit 21; '
          '[ -d "$(dirname -- "$1")" ] && exit 22; exit 23')
_RECEIVE = 'cd -- "$1" && exec tar -x --no-same-owner -f -'
_SEND = 'cd -- "$1" && exec tar -c -f - -- "$2"'


def _script(script: str, *args: str) -> str:
    """A command line for the agent's shell: `sh -c SCRIPT` in the workspace, its arguments quoted
    (no login shell: its startup files could print into the stream)."""
    return f"cd {ssh.WORKDIR} && exec sh -c {shlex.quote(script)} cai-cp " + " ".join(shlex.quote(a) for a in args)


def _probe(eng: engine.Engine, container: engine.Container, path: str) -> int:
    """What `path` is in the container; the connection is made (and shared) here, with cai's
    retries and key repair, so the transfer that follows finds it open."""
    code = containers.connect(eng, container, _script(_PROBE, path), tty=None, shared=True)
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
    argv = [*ssh.base_argv(endpoint), *sharing, "-T", "-o", "BatchMode=yes", ssh.HOST, remote]
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
    errors.seek(0)
    said = [f"  {line}" for line in errors.read().decode(errors="replace").splitlines() if line.strip()][-5:]
    code = ExitCode.SSH_CONNECT_FAILED if rc == 255 else ExitCode.ERROR
    raise CaiError(code, f"Copy failed: {what} (exit {rc})", *said)


# --- in --------------------------------------------------------------------------------------


def copy_in(eng: engine.Engine, container: engine.Container, local: str, path: str) -> int:
    source = Path(os.path.realpath(local))  # a link the user names is followed, as cp does
    if not os.path.lexists(local) or not source.exists():
        raise CaiError(ExitCode.ERROR, f"No such file or directory: {output.shown(local)}")
    if not (source.is_dir() or source.is_file()):
        raise CaiError(ExitCode.ERROR, f"Not a regular file or directory: {output.shown(local)}")
    path = path or "."
    kind = _probe(eng, container, path)
    given_name = os.path.basename(os.path.abspath(local))
    if kind == _IS_DIR:
        directory, name = path, given_name
    elif path.endswith("/") or kind == _NO_PARENT:
        raise CaiError(ExitCode.ERROR, f"No such directory in {container.name}: {output.shown(':' + path)}")
    elif kind == _IS_OTHER and source.is_dir():
        raise CaiError(ExitCode.ERROR, f"Cannot copy a directory over the file {output.shown(':' + path)}")
    else:
        directory, name = posixpath.dirname(path) or ".", posixpath.basename(path)
    child, errors = _session(container, _script(_RECEIVE, directory), send=True)
    count = 0
    try:
        if source.is_dir():
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
    _finish(child, errors, f"{output.shown(local)} → {container.name}:{output.shown(path)}")
    return count


def _send_tree(root: Path, name: str, sink: IO[bytes]) -> int:
    source = archives.Source(root)
    try:
        plan = archives.scan(source, [])
        if plan.cleared_bits:
            output.warn(f"Cleared setuid, setgid and sticky bits on {plan.cleared_bits} entries")
        for chunk in archives.tar_stream(source, plan, name, owner=AGENT_OWNER):
            sink.write(chunk)
    finally:
        source.close()
    return len(plan.entries) + 1


def _send_file(path: Path, name: str, sink: IO[bytes]) -> int:
    with open(path, "rb") as handle, tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        found = os.fstat(handle.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = found.st_size, int(found.st_mtime), found.st_mode & 0o777
        info.uid, info.gid = AGENT_OWNER
        tar.addfile(info, handle)
    return 1


# --- out -------------------------------------------------------------------------------------


def copy_out(eng: engine.Engine, container: engine.Container, path: str, local: str) -> int:
    clean = posixpath.normpath(posixpath.join(ssh.WORKDIR, path))
    directory, member = posixpath.split(clean)
    if not member:
        raise CaiError(ExitCode.ERROR, "Copying the container's whole file system is not supported; name a path below /")
    kind = _probe(eng, container, clean)
    if kind in (_MISSING, _NO_PARENT):
        raise CaiError(ExitCode.ERROR, f"No such file or directory in {container.name}: {output.shown(':' + path)}")
    target = Path(local)
    if target.is_dir():
        into, name = target, member
    elif target.parent.is_dir():
        into, name = target.parent, target.name
    else:
        raise CaiError(ExitCode.ERROR, f"No such directory: {output.shown(str(target.parent))}")
    child, errors = _session(container, _script(_SEND, directory, member), send=False)
    try:
        count = _receive(child.stdout, member, name, into)
    except tarfile.FilterError as exc:
        child.kill()
        raise CaiError(ExitCode.ERROR, f"Refused what {container.name} sent: {exc}",
                       "Nothing past that entry was written.") from None
    except tarfile.TarError as exc:
        child.kill()
        child.wait()
        _finish(child, errors, f"{container.name}:{output.shown(path)} → {output.shown(local)}")
        raise CaiError(ExitCode.ERROR, f"Copy failed: the stream from {container.name} is not a tar ({exc})") from None
    finally:
        child.stdout.close()
    _finish(child, errors, f"{container.name}:{output.shown(path)} → {output.shown(local)}")
    return count


def _receive(stream: IO[bytes], top: str, name: str, into: Path) -> int:
    """Extract the stream's entries under `into`, the top-level `top` renamed `name`."""
    count = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            member.name = _renamed(member.name, top, name)
            if member.islnk():
                member.linkname = _renamed(member.linkname, top, name)
            tar.extract(member, into, filter="data")
            count += 1
    return count


def _renamed(member_name: str, top: str, name: str) -> str:
    if member_name == top:
        return name
    if member_name.startswith(top + "/"):
        return name + member_name[len(top):]
    return member_name  # not under the top: the filter judges it as it is
