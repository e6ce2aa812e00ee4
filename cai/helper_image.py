"""The helper image cai makes when an engine has none that fits (no agent image, no registry).

A root filesystem of a few MB, taken from this host's own programs and the libraries `ldd` names
for them, imported through the engine API. It runs only on an engine of the host's architecture;
elsewhere it is an empty filesystem, which still serves a helper that is never started (export).
"""

from __future__ import annotations

import io
import platform
import re
import shutil
import tarfile

from cai import proc

REPOSITORY, TAG = "containai-helper", "1"
REFERENCE = f"{REPOSITORY}:{TAG}"
# What the import swap and its checks run; each a host program, found on PATH.
PROGRAMS = ("env", "sh", "sleep", "stat", "mv", "rm", "mkdir", "rmdir", "cat", "df", "chown", "chmod", "touch")
_DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_arch() -> str:
    machine = platform.machine()
    return _DOCKER_ARCH.get(machine, machine)


def rootfs(with_programs: bool) -> tuple[bytes, bool]:
    """(a gzip-free rootfs tar, whether it has the programs). Programs go under /bin with their
    libraries at the paths `ldd` gives, so the dynamic loader finds them."""
    files: dict[str, str] = {}
    if with_programs:
        for name in PROGRAMS:
            path = shutil.which(name)
            if path is None:
                files = {}
                break
            files[f"bin/{name}"] = path
            linked = proc.run(["ldd", path], timeout=10)
            if linked.rc != 0 and "not a dynamic executable" not in linked.out + linked.err:
                files = {}
                break
            for library in re.findall(r"(/\S+) \(0x", linked.out):
                files[library.lstrip("/")] = library
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "data", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for arcname, path in sorted(files.items()):
            info = _dereferenced(tar, path, arcname)
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue(), bool(files)


def _dereferenced(tar: tarfile.TarFile, path: str, arcname: str) -> tarfile.TarInfo:
    import os

    info = tar.gettarinfo(os.path.realpath(path), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
