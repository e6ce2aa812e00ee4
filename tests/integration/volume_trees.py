"""Trees of data volumes and of tar archives, made comparable; and a corpus that looks like a real
agent home.

A tree maps each path (bytes, relative, no leading `./`; the root is `.`) to an `Entry`: type,
permission bits, owner, mtime (whole seconds, floored), and for regular files size and sha256 of
the content, for symlinks the target bytes, and for hard-linked files a group id (the smallest
path of the group, so it does not matter which member an archive stores "first").

Nothing here holds a file's content in memory: archives are read as streams and hashed chunk by
chunk; volumes are read inside a throwaway container (`find -printf` and `sha256sum -z`, NUL
separated), so the checker looks at the volume itself, not at an archive cai made of it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import secrets
import stat
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping

RUN_LABEL = "cai.test.run"
AGENT_IMAGE = os.environ.get("CAI_TEST_IMAGE", "containai:latest")
AGENT_MOUNT = "/mnt/agent-data"
# Where a reader mounts the volume: a path that does not exist in the image, so Docker never
# copies image content (or the image directory's owner and mode) into an empty volume.
READ_MOUNT = "/cai-volume-under-test"
PRIVATE_PATTERNS = ("shell/bashrc.d/*.priv.*",)
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def _run_id() -> str:
    try:
        from conftest import RUN_ID
        return RUN_ID
    except Exception:  # noqa: BLE001 - used outside pytest
        return "volume-trees"


# --- the comparable structure ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    kind: str  # dir, file, symlink, chr, blk, fifo, other
    mode: int | None  # permission bits incl. setuid/setgid/sticky; None for symlinks (always 0777 on Linux)
    uid: int
    gid: int
    mtime: int
    size: int | None = None  # regular files only
    sha256: str | None = None  # regular files only
    target: bytes | None = None  # symlinks only
    group: bytes | None = None  # hard-linked regular files: the smallest path of the inode group

    def describe(self, field: str) -> str:
        value = getattr(self, field)
        if field == "mode" and value is not None:
            return oct(value)
        if isinstance(value, bytes):
            return show(value)
        return repr(value)


Tree = dict  # dict[bytes, Entry]
FIELDS = ("kind", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "group")


def show(path: bytes) -> str:
    """A path for a message: printable, and NFC/NFD spellings stay distinguishable."""
    text = path.decode("utf-8", "backslashreplace")
    shown = text.encode("unicode_escape").decode("ascii") if not text.isascii() or not text.isprintable() else text
    return repr(shown) if shown == text else f"{text!r} (escaped: {shown})"


def normalize_name(name: str | bytes) -> bytes:
    """`./a/b`, `a/b`, `a/b/` → b"a/b"; `.`, `./`, `` → b"."."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    while raw.startswith(b"./"):
        raw = raw[2:]
    raw = raw.rstrip(b"/") if raw not in (b"/",) else raw
    return b"." if raw in (b"", b".") else raw


def _kind_of_tar(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.ischr():
        return "chr"
    if member.isblk():
        return "blk"
    if member.isfifo():
        return "fifo"
    if member.isfile():
        return "file"
    return "other"


def _hash_stream(handle, chunk: int = 1 << 20) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while True:
        block = handle.read(chunk)
        if not block:
            return size, digest.hexdigest()
        size += len(block)
        digest.update(block)


def _apply_groups(tree: Tree, groups: Iterable[list[bytes]]) -> None:
    for members in groups:
        if len(members) < 2:
            continue
        group = min(members)
        for path in members:
            tree[path] = replace(tree[path], group=group)


def tree_of_tar_stream(fileobj, *, mode: str = "r|*") -> Tree:
    """Read a tar (any compression) as a stream; hard links become members of their target's group."""
    tree: Tree = {}
    links: dict[bytes, list[bytes]] = {}
    with tarfile.open(fileobj=fileobj, mode=mode) as archive:
        for member in archive:
            path = normalize_name(member.name)
            if path in tree:
                raise ValueError(f"archive holds {show(path)} twice")
            mtime = int(member.mtime // 1)
            if member.islnk():
                target = normalize_name(member.linkname)
                if target not in tree or tree[target].kind != "file":
                    raise ValueError(f"hard link {show(path)} to {show(target)}, which is no earlier regular file")
                root = tree[target].group or target
                tree[path] = tree[root]
                links.setdefault(root, [root]).append(path)
                continue
            kind = _kind_of_tar(member)
            entry = Entry(kind, None if kind == "symlink" else stat.S_IMODE(member.mode), member.uid, member.gid, mtime)
            if kind == "file":
                size, digest = _hash_stream(archive.extractfile(member))
                entry = replace(entry, size=size, sha256=digest)
            elif kind == "symlink":
                entry = replace(entry, target=member.linkname.encode("utf-8", "surrogateescape"))
            tree[path] = entry
    _apply_groups(tree, links.values())
    return tree


def tree_of_archive(path: str | os.PathLike) -> Tree:
    with open(path, "rb") as raw:
        return tree_of_tar_stream(raw)


class _ChunkFile(io.RawIOBase):
    def __init__(self, chunks):
        self._chunks, self._buffer = iter(chunks), b""

    def readable(self):
        return True

    def readinto(self, target):
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(target), len(self._buffer))
        target[:count], self._buffer = self._buffer[:count], self._buffer[count:]
        return count


def _client(client=None):
    if client is not None:
        return client
    import docker
    return docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=120)


def volume_exists(volume: str, client=None) -> bool:
    import docker
    try:
        _client(client).volumes.get(volume)
        return True
    except docker.errors.NotFound:
        return False


def _require_volume(volume: str, client) -> None:
    # Mounting a missing volume would create it; a checker must never do that.
    if not volume_exists(volume, client):
        raise AssertionError(f"volume {volume} does not exist")


_LISTING = (
    f"mkdir /tmp/report && cd {READ_MOUNT} && "
    "find . -printf '%y\\0%m\\0%U\\0%G\\0%T@\\0%s\\0%i\\0%n\\0%P\\0%l\\0' > /tmp/report/listing && "
    "find . -type f -print0 | xargs -0 -r sha256sum -z > /tmp/report/hashes"
)
_FIND_KINDS = {"d": "dir", "f": "file", "l": "symlink", "c": "chr", "b": "blk", "p": "fifo"}


def tree_of_volume(volume: str, client=None, *, image: str = AGENT_IMAGE) -> Tree:
    """The volume as it is on disk, read by `find` and `sha256sum` in a container of `image`
    that mounts it read-only at a path the image does not have. Hard links are grouped by inode."""
    client = _client(client)
    _require_volume(volume, client)
    # The output is read back as files through the archive API, not from the logs: a log driver
    # drops a last partial line and mangles bytes that are not UTF-8.
    container = client.containers.create(
        image, ["sh", "-c", _LISTING], entrypoint=[], user="0:0", network_mode="none",
        labels={RUN_LABEL: _run_id(), "cai.test.role": "volume-reader"},
        volumes={volume: {"bind": READ_MOUNT, "mode": "ro"}},
    )
    try:
        container.start()
        code = container.wait(timeout=300)["StatusCode"]
        if code != 0:
            raise AssertionError(f"reading volume {volume} failed ({code}): {container.logs()[-2000:]!r}")
        stream, _ = client.api.get_archive(container.id, "/tmp/report", chunk_size=1 << 16)
        report = {}
        with tarfile.open(fileobj=io.BufferedReader(_ChunkFile(stream), 1 << 16), mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    report[member.name.rsplit("/", 1)[-1]] = tar.extractfile(member).read()
    finally:
        container.remove(force=True)
    listing, hashes = report["listing"], report["hashes"]
    fields = listing.split(b"\0")
    assert fields[-1] == b"" and (len(fields) - 1) % 10 == 0, "unexpected find output"
    tree: Tree = {}
    inodes: dict[int, list[bytes]] = {}
    for i in range(0, len(fields) - 1, 10):
        kind_code, mode, uid, gid, mtime, size, inode, _nlink, path, target = fields[i:i + 10]
        path = path or b"."
        kind = _FIND_KINDS.get(kind_code.decode(), "other")
        entry = Entry(kind, None if kind == "symlink" else int(mode, 8), int(uid), int(gid),
                      int(mtime.split(b".")[0]) if not mtime.startswith(b"-") else int(float(mtime) // 1))
        if kind == "file":
            entry = replace(entry, size=int(size))
            inodes.setdefault(int(inode), []).append(path)
        elif kind == "symlink":
            entry = replace(entry, target=target)
        tree[path] = entry
    for record in hashes.split(b"\0")[:-1]:
        digest, _, name = record.partition(b"  ")
        path = normalize_name(name)
        tree[path] = replace(tree[path], sha256=digest.decode())
    missing = [p for p, e in tree.items() if e.kind == "file" and e.sha256 is None]
    assert not missing, f"no hash for {[show(p) for p in missing[:3]]}"
    _apply_groups(tree, inodes.values())
    return tree


def tree_of_volume_via_archive(volume: str, client, *, image: str) -> Tree:
    """The volume through the engine's archive API, of a container of `image` that mounts it and is
    never started (works with images that have no shell, e.g. a spare engine's tiny image)."""
    _require_volume(volume, client)
    container = client.containers.create(image, ["/bin/true"], labels={RUN_LABEL: _run_id(), "cai.test.role": "volume-reader"},
                                         network_mode="none", volumes={volume: {"bind": READ_MOUNT, "mode": "ro"}})
    try:
        stream, _ = client.api.get_archive(container.id, f"{READ_MOUNT}/.", chunk_size=1 << 16)
        tree = tree_of_tar_stream(io.BufferedReader(_ChunkFile(stream), 1 << 16))
    finally:
        container.remove(force=True)
    return tree


# --- comparing -------------------------------------------------------------------------------


def differences(a: Mapping[bytes, Entry], b: Mapping[bytes, Entry]) -> list[str]:
    found = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            found.append(f"{show(path)} is only in the first tree ({a[path].kind})")
        elif path not in a:
            found.append(f"{show(path)} is only in the second tree ({b[path].kind})")
        elif a[path] != b[path]:
            for field in FIELDS:
                if getattr(a[path], field) != getattr(b[path], field):
                    found.append(f"{show(path)}: {field} differs: {a[path].describe(field)} != {b[path].describe(field)}")
                    break
    return found


def assert_same_tree(a: Mapping[bytes, Entry], b: Mapping[bytes, Entry], what: str = "trees") -> None:
    """Raise AssertionError naming the FIRST difference (in path order), plus how many there are."""
    found = differences(a, b)
    if found:
        more = f" (and {len(found) - 1} more, e.g. {found[1:4]})" if len(found) > 1 else ""
        raise AssertionError(f"{what} differ: first difference: {found[0]}{more}")


def without(tree: Mapping[bytes, Entry], *paths: bytes) -> Tree:
    return {p: e for p, e in tree.items() if p not in paths}


def is_private(path: bytes, patterns: Iterable[str] = PRIVATE_PATTERNS) -> bool:
    """GNU tar --exclude semantics as cai applies them: any run of components may match."""
    parts = [p for p in path.decode("utf-8", "surrogateescape").split("/") if p and p != "."]
    return any(fnmatch.fnmatchcase("/".join(parts[s:e]), pattern)
               for s in range(len(parts)) for e in range(s + 1, len(parts) + 1) for pattern in patterns)


def expected_after_import(tree: Mapping[bytes, Entry], *, exclude_private: bool = True) -> Tree:
    """What a volume holds after `cai import` of an archive with this tree: *.priv.* left out
    (default), setuid/setgid/sticky cleared. Hard-link groups are renormalized."""
    kept = {p: e for p, e in tree.items() if not (exclude_private and p != b"." and is_private(p))}
    out: Tree = {}
    groups: dict[bytes, list[bytes]] = {}
    for path, entry in kept.items():
        if entry.mode is not None and entry.mode & SPECIAL_BITS:
            entry = replace(entry, mode=entry.mode & ~SPECIAL_BITS)
        if entry.group is not None:
            groups.setdefault(entry.group, []).append(path)
            entry = replace(entry, group=None)
        out[path] = entry
    _apply_groups(out, groups.values())
    return out


def special_bit_count(tree: Mapping[bytes, Entry]) -> int:
    return sum(1 for e in tree.values() if e.mode is not None and e.mode & SPECIAL_BITS)


def ignore_root_mtime(tree: Mapping[bytes, Entry]) -> Tree:
    out = dict(tree)
    if b"." in out:
        out[b"."] = replace(out[b"."], mtime=0)
    return out


# --- a corpus like a real agent home ---------------------------------------------------------

NFC_NAME = unicodedata.normalize("NFC", "café-ñ.txt")
NFD_NAME = unicodedata.normalize("NFD", "café-ñ.txt")
NAME_255_ASCII = "n" * 251 + ".txt"
NAME_255_UTF8 = "é" * 126 + "end"  # 252 + 3 = 255 bytes
LONG_DIR = "misc/" + "/".join(["deep-directory-" + c * 20 for c in "abcd"])  # > 100 bytes with its file
NEWLINE_NAME = "new\nline.txt"
SPARSE = "misc/big.sparse"
SPARSE_SIZE = 200 << 20
PRIVATE_FILE = "shell/bashrc.d/token.priv.sh"

assert len(NAME_255_ASCII.encode()) == 255 and len(NAME_255_UTF8.encode()) == 255
assert NFC_NAME != NFD_NAME

_AGENT_SCRIPT = r"""
set -eu
cd "$ROOT"
umask 022
mkdir -p claude/projects shell/bashrc.d misc/empty-dir misc/nested/empty/deeper misc/links "$LONG_DIR"
mkdir -m 700 ssh
printf '{"theme":"dark"}\n' > claude/settings.json
printf 'secret\n' > claude/.credentials.json && chmod 600 claude/.credentials.json
printf 'ssh-ed25519 AAAA test\n' > ssh/id_ed25519.pub && printf 'PRIVATE\n' > ssh/id_ed25519 && chmod 600 ssh/id_ed25519
printf 'alias ll="ls -l"\n' > shell/bashrc.d/aliases.sh
printf 'export TOKEN=x\n' > "$PRIVATE_FILE"
: > misc/empty-file
printf 'spaces' > 'misc/name with  spaces .txt'
printf 'newline' > "misc/$NEWLINE_NAME"
printf 'nfc' > "misc/$NFC_NAME"
printf 'nfd' > "misc/$NFD_NAME"
printf 'ascii255' > "misc/$NAME_255_ASCII"
printf 'utf8-255' > "misc/$NAME_255_UTF8"
printf 'long path' > "$LONG_DIR/file-at-the-end-of-a-long-path.txt"
printf 'shared inode\n' > misc/links/one
ln misc/links/one misc/links/two
ln misc/links/one misc/hardlink-elsewhere
printf 'pair\n' > misc/pair-a && ln misc/pair-a misc/links/pair-b
ln -s does-not-exist misc/links/dangling
ln -s /etc/hostname misc/links/absolute
ln -s ../settings.json claude/projects/up-relative
ln -s "../$NFD_NAME" misc/links/to-nfd
printf 'old\n' > misc/old-file && touch -d '1999-12-31 23:59:59.75' misc/old-file
touch -h -d '2001-02-03 04:05:06' misc/links/absolute
printf 'exec\n' > misc/script.sh && chmod 755 misc/script.sh
printf 'ro\n' > misc/read-only && chmod 444 misc/read-only
printf 'group\n' > misc/group-writable && chmod 664 misc/group-writable
truncate -s "$SPARSE_SIZE" "$SPARSE"
printf 'in the middle' | dd of="$SPARSE" bs=1 seek=$((SPARSE_SIZE / 2)) conv=notrunc status=none
mkdir -p projects/web/node_modules/left-pad/bin projects/web/node_modules/@scope/tool/bin projects/web/node_modules/.bin
cd projects/web
printf '{"name":"web","dependencies":{"left-pad":"1.3.0"}}\n' > package.json
printf '{"name":"left-pad","version":"1.3.0","bin":{"left-pad":"bin/cli.js"}}\n' > node_modules/left-pad/package.json
printf 'module.exports = (s, n) => s.padStart(n);\n' > node_modules/left-pad/index.js
printf '#!/usr/bin/env node\nrequire("..");\n' > node_modules/left-pad/bin/cli.js && chmod 755 node_modules/left-pad/bin/cli.js
printf '{"name":"@scope/tool","bin":{"tool":"bin/tool.js"}}\n' > node_modules/@scope/tool/package.json
printf '#!/usr/bin/env node\n' > node_modules/@scope/tool/bin/tool.js && chmod 755 node_modules/@scope/tool/bin/tool.js
ln -s ../left-pad/bin/cli.js node_modules/.bin/left-pad
ln -s ../@scope/tool/bin/tool.js node_modules/.bin/tool
ln -s ../missing/bin/gone.js node_modules/.bin/gone
"""

_ROOT_SCRIPT = r"""
set -eu
cd "$ROOT"
mkdir -p root-owned/sub
printf 'root\n' > root-owned/file && chmod 640 root-owned/file
printf 'root in agent dir\n' > misc/root-file
chown 0:1000 misc/root-file
printf 'agent in root dir\n' > root-owned/agent-file && chown 1000:1000 root-owned/agent-file
printf 'other ids\n' > misc/other-ids && chown 1234:5678 misc/other-ids
ln -s /root misc/root-symlink
touch -d '2010-10-10 10:10:10' root-owned/sub
"""


def _exec(container, argv, *, user="0:0", environment=None) -> str:
    code, out = container.exec_run(argv, user=user, environment=environment or {}, demux=False)
    text = (out or b"").decode(errors="replace")
    if code != 0:
        raise AssertionError(f"{argv[:3]} as {user} failed ({code}): {text[-2000:]}")
    return text


def _upload_dir(container, source: Path, dest_parent: str, arcname: str, uid: int = 1000, gid: int = 1000) -> None:
    """Tar a host directory (owner set to uid:gid, symlinks kept) to a temp file and stream it in."""
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        info.mode &= ~SPECIAL_BITS  # pytest's temp dirs may be setgid; the exact round trip has no such bits
        return info

    with tempfile.TemporaryFile() as packed:
        with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(str(source), arcname=arcname, filter=owned)
        packed.seek(0)
        assert container.put_archive(dest_parent, packed), f"put_archive {arcname} failed"


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo.parent)}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env, timeout=120)


def _host_git_repo(workdir: Path) -> Path:
    repo = workdir / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for i in range(3):
        (repo / f"file{i}.txt").write_text(f"version {i}\n" * (i + 1))
        (repo / "src").mkdir(exist_ok=True)
        (repo / "src" / "mod.py").write_text(f"VALUE = {i}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {i}")
    _git(repo, "tag", "v1")
    _git(repo, "branch", "feature")
    _git(repo, "gc", "-q", "--aggressive")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    (repo / "untracked.tmp").write_text("not committed\n")
    assert list((repo / ".git" / "objects" / "pack").glob("*.pack")), "git gc made no pack"
    return repo


def build_real_home_corpus(container, docker_client, *, root: str = AGENT_MOUNT) -> dict:
    """Fill `root` (the data volume, mounted in a running container of the agent image) with a
    tree like a real agent home. Returns notes: which way the venv was made, notable paths."""
    if isinstance(container, str):
        container = docker_client.containers.get(container)
    notes: dict = {"private": [PRIVATE_FILE.encode()]}
    env = {"ROOT": root, "LONG_DIR": LONG_DIR, "NFC_NAME": NFC_NAME, "NFD_NAME": NFD_NAME, "NEWLINE_NAME": NEWLINE_NAME,
           "NAME_255_ASCII": NAME_255_ASCII, "NAME_255_UTF8": NAME_255_UTF8, "SPARSE": SPARSE,
           "SPARSE_SIZE": str(SPARSE_SIZE), "PRIVATE_FILE": PRIVATE_FILE}
    _exec(container, ["sh", "-c", _AGENT_SCRIPT], user="1000:1000", environment=env)
    _exec(container, ["sh", "-c", _ROOT_SCRIPT], environment=env)
    _exec(container, ["mkdir", "-p", f"{root}/venvs", f"{root}/projects"], user="1000:1000")
    has_python = container.exec_run(["sh", "-c", "command -v python3"])[0] == 0
    with tempfile.TemporaryDirectory(prefix="cai-corpus-") as work:
        workdir = Path(work)
        if has_python:
            _exec(container, ["python3", "-m", "venv", f"{root}/venvs/proj"], user="1000:1000")
            notes["venv"] = "made in the container"
        else:
            # FALLBACK: the image has no python3 (yet), so the venv is made on the host with the host's
            # python and uploaded with put_archive; its bin/python is then an absolute symlink that dangles
            # in the container, which is fine for a data round trip.
            subprocess.run([sys.executable, "-m", "venv", str(workdir / "proj")], check=True, capture_output=True,
                           timeout=180)
            _upload_dir(container, workdir / "proj", f"{root}/venvs", "proj")
            notes["venv"] = "made on the host and uploaded (no python3 in the image)"
        # git exists on the host, not in the image: build, gc and upload
        _upload_dir(container, _host_git_repo(workdir), f"{root}/projects", "repo")
    special = _exec(container, ["find", root, "-perm", "/7000"])
    assert not special.strip(), f"the corpus must have no setuid/setgid/sticky bits: {special[:500]}"
    return notes


# --- volumes for tests -----------------------------------------------------------------------


def make_volume(client, prefix: str = "cai-test-vt") -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    client.volumes.create(name, labels={RUN_LABEL: _run_id()})
    return name


def remove_volume(client, name: str) -> None:
    """Remove a volume and any container (e.g. a leftover helper) still holding it."""
    import docker
    for container in client.containers.list(all=True, filters={"volume": name}):
        container.remove(force=True)
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


def fill_volume_from_tar(client, volume: str, tar_path: str | os.PathLike, *, image: str = AGENT_IMAGE) -> None:
    """Extract an uncompressed tar into a volume through the engine's archive API (no cai involved)."""
    container = client.containers.create(image, ["true"], entrypoint=[], labels={RUN_LABEL: _run_id()},
                                         network_mode="none", volumes={volume: {"bind": READ_MOUNT, "mode": "rw"}})
    try:
        with open(tar_path, "rb") as data:
            assert client.api.put_archive(container.id, READ_MOUNT, data)
    finally:
        container.remove(force=True)


def run_in_volume(client, volume: str, script: str, *, image: str = AGENT_IMAGE, env: dict | None = None) -> bytes:
    """`sh -c script` as root with the volume at $V (= READ_MOUNT), read-write."""
    return client.containers.run(image, ["sh", "-c", script], entrypoint=[], user="0:0", remove=True,
                                 network_mode="none", environment={"V": READ_MOUNT, **(env or {})},
                                 labels={RUN_LABEL: _run_id()}, volumes={volume: {"bind": READ_MOUNT, "mode": "rw"}})


# --- archives made by hand -------------------------------------------------------------------

MTIME = 1_600_000_000


@dataclass(frozen=True)
class Member:
    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, chr, blk, fifo
    data: bytes = b""
    mode: int | None = None
    uid: int = 1000
    gid: int = 1000
    mtime: int = MTIME
    target: str = ""


def f(name: str, data: bytes = b"x\n", **kw) -> Member:
    return Member(name, "file", data, **kw)


def d(name: str, **kw) -> Member:
    return Member(name, "dir", **kw)


def sym(name: str, target: str, **kw) -> Member:
    return Member(name, "symlink", target=target, **kw)


def hard(name: str, target: str, **kw) -> Member:
    return Member(name, "hardlink", target=target, **kw)


def node(name: str, kind: str, **kw) -> Member:
    return Member(name, kind, **kw)


_TAR_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
              "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
_DEFAULT_MODES = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "hardlink": 0o644, "chr": 0o600, "blk": 0o600,
                  "fifo": 0o644}


def tar_info(member: Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.type = _TAR_TYPES[member.kind]
    info.mode = _DEFAULT_MODES[member.kind] if member.mode is None else member.mode
    info.uid, info.gid, info.mtime = member.uid, member.gid, member.mtime
    info.uname = info.gname = ""
    info.linkname = member.target
    if member.kind in ("chr", "blk"):
        info.devmajor, info.devminor = (1, 3) if member.kind == "chr" else (7, 0)
    info.size = len(member.data) if member.kind == "file" else 0
    return info


def write_archive(path: str | os.PathLike, members: Iterable[Member], *, compress: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if compress else "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tar_info(member)
            tar.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return Path(path)


def refusal_names(stderr: str) -> list[str]:
    """The entry names of `[ERROR] Refusing to import SOURCE: entry 'NAME' ...` lines."""
    import re
    return [m.group(1) for m in re.finditer(r"^\[ERROR\] Refusing to import .*?: entry '(.*?)' ", stderr, re.M)]


def helpers(client, *volumes: str) -> list:
    """Helper containers cai left, in any state: those mounting one of `volumes` (other test runs may
    share the engine), or with no volumes given, every container labelled containai.helper."""
    if not volumes:
        return client.containers.list(all=True, filters={"label": "containai.helper"})
    found = client.containers.list(all=True, filters={"volume": list(volumes)})
    return [c for c in found if c.labels.get("cai.test.role") != "volume-reader" and c.labels.get(RUN_LABEL) is None]


class HelperWatch:
    """Watches, while a cai command runs, every container that mounts one of `volumes` (polled
    every few ms, so short-lived helpers are seen too); `seen` maps id → labels."""

    def __init__(self, client, *volumes: str, interval: float = 0.02) -> None:
        import threading
        self.client, self.volumes, self.interval = client, list(volumes), interval
        self.seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        try:
            for c in self.client.api.containers(all=True, filters={"volume": self.volumes}):
                labels = c.get("Labels") or {}
                if labels.get(RUN_LABEL) is None:
                    self.seen[c["Id"]] = labels
        except Exception:  # noqa: BLE001 - a container vanished mid-call; poll again
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    def __enter__(self) -> "HelperWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def roles(self) -> set:
        return {labels.get("containai.helper.role") for labels in self.seen.values()}

    def assert_all_labelled(self, roles: Iterable[str]) -> None:
        for cid, labels in self.seen.items():
            assert labels.get("containai.helper") == "true", f"container {cid[:12]} without containai.helper=true: {labels}"
            assert labels.get("containai.helper.role") in set(roles), f"container {cid[:12]}: unexpected role: {labels}"


def free_bytes(client, volume: str, image: str = AGENT_IMAGE) -> int:
    out = client.containers.run(image, ["df", "-B1", "--output=avail", READ_MOUNT], entrypoint=[], remove=True,
                                network_mode="none", labels={RUN_LABEL: _run_id()},
                                volumes={volume: {"bind": READ_MOUNT, "mode": "ro"}})
    return int(out.split()[-1])


# --- archives that declare more data than they hold ------------------------------------------


def _gnu_sparse_member(name: str, realsize: int, data: bytes = b"tail\n") -> bytes:
    """An old-GNU sparse member ('S'): one data run of len(data) at the very end of a `realsize`
    file (a hole before it), so the archive is tiny and the file is huge."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.GNUTYPE_SPARSE, 0o644, MTIME, 1000, 1000
    info.size = len(data)
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    assert len(header) == tarfile.BLOCKSIZE, "keep the name short: no long-name header"
    header[386:398] = tarfile.itn(realsize - len(data), 12, tarfile.GNU_FORMAT)
    header[398:410] = tarfile.itn(len(data), 12, tarfile.GNU_FORMAT)
    header[482] = 0  # no extension blocks
    header[483:495] = tarfile.itn(realsize, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(header))[0]
    padding = (-len(data)) % tarfile.BLOCKSIZE
    return bytes(header) + data + b"\0" * padding


def _pax_sparse_member(name: str, realsize: int, data: bytes = b"tail\n") -> bytes:
    """A GNU sparse 1.0 member in PAX form: the map in the first data block, realsize in the header."""
    run_offset = realsize - len(data)
    sparse_map = b"1\n%d\n%d\n" % (run_offset, len(data))
    sparse_map += b"\0" * ((-len(sparse_map)) % tarfile.BLOCKSIZE)
    body = sparse_map + data
    info = tarfile.TarInfo(f"./GNUSparseFile.0/{name.lstrip('./')}")
    info.mode, info.mtime, info.uid, info.gid, info.size = 0o644, MTIME, 1000, 1000, len(body)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(realsize)}
    return info.tobuf(format=tarfile.PAX_FORMAT) + body + b"\0" * ((-len(body)) % tarfile.BLOCKSIZE)


def _pax_size_member(name: str, size: int, data: bytes = b"tiny\n") -> bytes:
    """A PAX header whose `size` record declares `size` bytes for a member that holds len(data)."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid, info.size = 0o644, MTIME, 1000, 1000, len(data)
    info.pax_headers = {"size": str(size)}
    return info.tobuf(format=tarfile.PAX_FORMAT) + data + b"\0" * ((-len(data)) % tarfile.BLOCKSIZE)


def write_oversized_archive(path: str | os.PathLike, kind: str, declared: int) -> Path:
    """A small gzip tar (a few valid members first) whose declared total size is `declared`:
    `gnu-sparse` / `pax-sparse` (one sparse member), `pax-size` (a PAX size record over a tiny
    file), `sparse-sum` (three sparse members of declared/3 each: each fits alone, not together)."""
    import gzip

    blocks = bytearray()
    for member in (d(".", mode=0o755), f("./before-the-big-one", b"ok\n")):
        info = tar_info(member)
        blocks += info.tobuf(format=tarfile.PAX_FORMAT)
        if member.kind == "file":
            blocks += member.data + b"\0" * ((-len(member.data)) % tarfile.BLOCKSIZE)
    if kind == "gnu-sparse":
        blocks += _gnu_sparse_member("./huge.sparse", declared)
    elif kind == "pax-sparse":
        blocks += _pax_sparse_member("./huge.sparse", declared)
    elif kind == "pax-size":
        blocks += _pax_size_member("./huge.claimed", declared)
    elif kind == "sparse-sum":
        for i in range(3):
            blocks += _pax_sparse_member(f"./part-{i}.sparse", declared // 3 + 1)
    else:
        raise ValueError(kind)
    blocks += b"\0" * (2 * tarfile.BLOCKSIZE)
    with gzip.open(path, "wb") as out:
        out.write(bytes(blocks))
    return Path(path)


def declared_sizes(path: str | os.PathLike) -> list[tuple[str, int]]:
    """What a tar reader (Python's) sees: (name, size) of each regular member, no data read."""
    sizes = []
    with tarfile.open(path, "r:gz") as archive:
        try:
            for member in archive:
                if member.isfile():
                    sizes.append((member.name, member.size))
        except tarfile.ReadError:  # pax-size: the reader runs off the end looking for the next header
            pass
    return sizes
