"""Tar streams an agent could send for `cai cp NAME:results DEST`, and what cai must do with each.

Standard library only: tests/unit/test_landing.py and tests/integration/test_cp.py run these cases in its own Python and, through
`python3 hostile_tars.py REPO`, under Debian's /usr/bin/python3 (3.11.2, no extraction filters).
Each case lands into a fresh directory whose parent holds a `.bashrc` and `.ssh/authorized_keys`,
as a user's home does; the report says what cai said and whether anything outside DEST changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import unicodedata

TOP = "results"
DEEP = "d" * 247  # long components: realpath gives up on the chain below (CVE-2025-4517)
STEPS = "abcdefghijklmnop"


def _tar(*members: tuple) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, *rest in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, rest[0] if rest else 0o755
            elif kind == "file":
                data = rest[0] if rest else b"data\n"
                info.size, info.mode = len(data), rest[1] if len(rest) > 1 else 0o644
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "sparse":  # GNU's old sparse type: tarfile reads a map and a real size from it
                info.type = tarfile.GNUTYPE_SPARSE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _cve_2025_4517_chain() -> bytes:
    """The published proof of concept, below the top: nested long directories and one-letter links
    to them, then a link whose lexical path stays inside while the kernel's lookup reaches `/`, and a
    file written through it."""
    members: list[tuple] = [(TOP, "dir")]
    path = TOP
    for step in STEPS:
        members.append((f"{path}/{DEEP}", "dir"))
        members.append((f"{path}/{step}", "sym", DEEP))
        path = f"{path}/{DEEP}"
    link_path = "/".join([TOP, *STEPS, "l" * 254])
    members.append((link_path, "sym", "../" * len(STEPS)))
    members.append((f"{TOP}/escape", "sym", link_path[len(TOP) + 1:] + "/../../../../../../../../etc/cron.d"))
    members.append((f"{TOP}/escape/pwned", "file", b"* * * * * root touch /pwned\n"))
    return _tar(*members)


def _huge_pax_header() -> bytes:
    """A pax header that claims 2 GiB: tarfile would read it whole into memory."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 1 << 31
    return info.tobuf(format=tarfile.USTAR_FORMAT) + b"x" * 4096


def refused_cases() -> dict[str, tuple[bytes, str]]:
    """name → (stream, a word the refusal must name)."""
    return {
        "member outside the top": (_tar((TOP, "dir"), (f"{TOP}/ok.txt", "file"), (".bashrc", "file", b"evil\n")), ".bashrc"),
        "authorized_keys beside the top": (_tar((TOP, "dir"), (".ssh/authorized_keys", "file", b"ssh-ed25519 AAAA evil\n")),
                                           ".ssh/authorized_keys"),
        "hard link to a file outside, then data": (_tar((TOP, "dir"), (f"{TOP}/notes.txt", "hard", ".bashrc"),
                                                        (f"{TOP}/notes.txt", "file", b"evil\n")), "notes.txt"),
        "hard link to a file not yet written": (_tar((TOP, "dir"), (f"{TOP}/a", "hard", f"{TOP}/b"), (f"{TOP}/b", "file")),
                                                f"{TOP}/a"),
        "absolute name": (_tar((TOP, "dir"), ("/tmp/cai-escape", "file")), "/tmp/cai-escape"),
        "dot-dot name": (_tar((TOP, "dir"), (f"{TOP}/../.bashrc", "file", b"evil\n")), "../.bashrc"),
        "absolute link": (_tar((TOP, "dir"), (f"{TOP}/etc", "sym", "/etc")), "/etc"),
        "link above the top": (_tar((TOP, "dir"), (f"{TOP}/up", "sym", "../.ssh")), "../.ssh"),
        "link out and back in": (_tar((TOP, "dir"), (f"{TOP}/round", "sym", f"../{TOP}/x")), "round"),
        "write through an inside link": (_tar((TOP, "dir"), (f"{TOP}/here", "sym", "."), (f"{TOP}/here/x", "file")),
                                         "here/x"),
        "link that a later link bends out": (_tar((TOP, "dir"), (f"{TOP}/x", "sym", "a/.."), (f"{TOP}/a", "sym", ".")),
                                             "x"),
        "link loop": (_tar((TOP, "dir"), (f"{TOP}/p", "sym", "q"), (f"{TOP}/q", "sym", "p")), "p"),
        "CVE-2025-4517 chain": (_cve_2025_4517_chain(), "results/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/l"),
        "device": (_tar((TOP, "dir"), (f"{TOP}/null", "chr")), "device"),
        "FIFO": (_tar((TOP, "dir"), (f"{TOP}/pipe", "fifo")), "FIFO"),
        "the same name twice": (_tar((TOP, "dir"), (f"{TOP}/a", "file"), (f"{TOP}/a", "file", b"again\n")), "twice"),
        "file below a file top": (_tar((TOP, "file"), (f"{TOP}/x", "file")), f"{TOP}/x"),
        "a 2 GiB pax header": (_huge_pax_header(), "header"),
        "not a tar": (b"\x00" * 100 + b"hello", "not a tar"),
        "sparse file": (_tar((TOP, "dir"), (f"{TOP}/holes", "sparse")), "sparse"),
        "NUL in a link's target": (_tar((TOP, "dir"), (f"{TOP}/nul", "sym", "a\x00" + "b" * 120)), "nul"),  # in pax
        "a tree deeper than cai removes or merges": (_tar((TOP, "dir"), ("/".join([TOP, *["a"] * 450, "f"]), "file"),
                                                          (f"{TOP}/pipe", "fifo")), "deep"),
        "dot-dot past a component the copy lacks": (_tar((TOP, "dir"), (f"{TOP}/up", "sym", "gone/../../..")), "up"),
        "another top": (_tar(("other", "dir"), ("other/x", "file")), "other"),
    }


def good_tree() -> bytes:
    """What a real workspace holds: a venv's lib64 link, node_modules/.bin links, hard links,
    NFC and NFD names, a newline and spaces in names, a long path, modes to keep and bits to drop."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    deep = "/".join(["level"] * 30)
    return _tar(
        (TOP, "dir", 0o755),
        (f"{TOP}/venv", "dir"), (f"{TOP}/venv/lib", "dir"), (f"{TOP}/venv/lib64", "sym", "lib"),
        (f"{TOP}/venv/lib/site.py", "file", b"print('site')\n"),
        (f"{TOP}/node_modules", "dir"), (f"{TOP}/node_modules/pkg", "dir"),
        (f"{TOP}/node_modules/pkg/cli.js", "file", b"#!/usr/bin/env node\n", 0o755),
        (f"{TOP}/node_modules/.bin", "dir"), (f"{TOP}/node_modules/.bin/pkg", "sym", "../pkg/cli.js"),
        (f"{TOP}/hard-a", "file", b"shared\n"), (f"{TOP}/hard-b", "hard", f"{TOP}/hard-a"),
        (f"{TOP}/{nfc}.txt", "file", b"nfc\n"), (f"{TOP}/{nfd}.txt", "file", b"nfd\n"),
        (f"{TOP}/new\nline and space", "file", b"odd\n"),
        (f"{TOP}/{deep}/bottom.txt", "file", b"deep\n"),
        (f"{TOP}/setuid", "file", b"#!/bin/sh\n", 0o4777),
        (f"{TOP}/locked", "dir", 0o500), (f"{TOP}/locked/inside", "file"),
        (f"{TOP}/dangling-inside", "sym", "not-there-yet"),
    )


def _fingerprint(root: str) -> dict[str, str]:
    """Every entry below `root`, with its content's hash or link target: what must not change."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                found[path] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    found[path] = hashlib.sha256(handle.read()).hexdigest()
            else:
                found[path] = "dir"
    return found


def home_with_secrets(base: str) -> str:
    home = os.path.join(base, "home with space")
    os.makedirs(os.path.join(home, ".ssh"))
    with open(os.path.join(home, ".bashrc"), "w") as handle:
        handle.write("# the user's own\n")
    with open(os.path.join(home, ".ssh", "authorized_keys"), "w") as handle:
        handle.write("ssh-ed25519 AAAA the-user\n")
    return home


def run_case(stream: bytes, *, name: str = TOP) -> dict:
    """Land `stream` as `name` in a fresh home; what cai said and what changed outside DEST."""
    from cai import landing
    from cai.errors import CaiError

    with tempfile.TemporaryDirectory() as base:
        home = home_with_secrets(base)
        before = _fingerprint(base)
        try:
            into_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
            count = landing.land(io.BufferedReader(io.BytesIO(stream)), TOP, into_fd, home, name, sender="what box sent")
            said, code = "", 0
        except CaiError as exc:
            said, code, count = exc.message, exc.code, 0
        after = _fingerprint(base)
        dest = os.path.join(home, name)
        outside_changed = sorted(path for path in set(before) | set(after)
                                 if not (path == dest or path.startswith(dest + os.sep)) and before.get(path) != after.get(path))
        return {"code": code, "said": said, "count": count, "dest_exists": os.path.lexists(dest),
                "outside_changed": [os.path.relpath(path, base) for path in outside_changed],
                "leftovers": sorted(entry for entry in os.listdir(home) if entry.startswith(".cai-cp-"))}


def main(repo: str) -> None:
    sys.path.insert(0, repo)
    report = {name: run_case(stream) for name, (stream, _) in refused_cases().items()}
    report["good tree"] = run_case(good_tree())
    report["python"] = sys.version.split()[0]
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
