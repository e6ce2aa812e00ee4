"""What `cai image build` puts together before and around the engine's build: the extra CA
certificates, the build context, and the builder's output turned into progress and into one
error that names the failed step."""

from __future__ import annotations

import re
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Iterator

from cai import output
from cai.errors import CaiError, ExitCode

DEFINITION_DIR = Path(__file__).resolve().parent.parent / "image"
CA_DIR = "ca-certificates"  # in the build context; the Dockerfile copies it into the trust store
HOST_EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")  # what the host's admin added to its store
HOST_DISTRO_CA_DIR = Path("/usr/share/ca-certificates")  # Debian's bundle, as the host has it
MAX_CERT_FILE = 1 << 20

# The body is base64 text only: each BEGIN's scan stops at the first other character, so a file of
# repeated BEGIN lines costs linear time, not quadratic (a certificate file may sit in a repo).
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*)-----END \1-----")


# --- CA certificates ----------------------------------------------------------------------------


class Certificate:
    __slots__ = ("source", "pem", "der")

    def __init__(self, source: Path, pem: str, der: bytes) -> None:
        self.source, self.pem, self.der = source, pem, der


def read_certificates(path: Path) -> list[Certificate]:
    """The PEM certificates in `path`, each checked by OpenSSL (through Python's ssl). Raises
    CaiError naming the file when it cannot be read, holds no certificate, or holds anything
    else (a private key, a broken block)."""
    import ssl

    shown = output.shown(str(path))
    try:
        if not path.is_file():
            raise CaiError(ExitCode.ERROR, f"Not a CA certificate file: {shown}", "[ERROR] No such regular file")
        with path.open("rb") as file:
            data = file.read(MAX_CERT_FILE + 1)
    except OSError as exc:
        raise CaiError(ExitCode.ERROR, f"Cannot read CA certificate file: {shown}", f"[ERROR] {exc.strerror or exc}") from exc
    if len(data) > MAX_CERT_FILE:
        raise CaiError(ExitCode.ERROR, f"Not a CA certificate file: {shown}", "[ERROR] Larger than 1 MiB")
    text = data.decode("ascii", errors="replace")
    blocks = list(_PEM_BLOCK.finditer(text))
    problem = None
    if text.count("-----BEGIN ") > len(blocks):
        problem = "A PEM block in it is not base64 text between its BEGIN and END lines"
    elif not blocks:
        problem = "No PEM certificate in it (-----BEGIN CERTIFICATE-----)"
    elif any(block[1] != "CERTIFICATE" for block in blocks):
        problem = f"It holds a {next(block[1] for block in blocks if block[1] != 'CERTIFICATE')}, not only certificates"
    certificates = []
    for block in blocks if problem is None else ():
        pem = block[0].replace("\r\n", "\n") + "\n"
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
            der = ssl.PEM_cert_to_DER_cert(pem)
        except (ssl.SSLError, ValueError) as exc:
            problem = f"OpenSSL cannot read a certificate in it ({getattr(exc, 'reason', None) or exc})"
            break
        certificates.append(Certificate(path, ssl.DER_cert_to_PEM_cert(der), der))
    if problem is not None:
        raise CaiError(ExitCode.ERROR, f"Not a PEM CA certificate: {shown}", f"[ERROR] {problem}")
    return certificates


def configured_ca_files(user_config: dict, config_path: Path) -> list[Path]:
    """`[image] ca_certs` of the user config: a list of paths (`~` expands; relative to the config's
    directory). Only the user's config: certificates trusted by an image that every workspace
    shares are not a repository's to choose."""
    table = user_config.get("image")
    value = table.get("ca_certs") if isinstance(table, dict) else None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise CaiError(ExitCode.ERROR, f"Invalid [image] ca_certs in {output.shown(str(config_path))}",
                       "[ERROR] A list of certificate file paths, e.g. ca_certs = [\"~/corp-ca.pem\"]")
    return [config_path.parent / Path(item).expanduser() for item in value]


def _crt_files(directory: Path) -> Iterator[Path]:
    try:
        yield from sorted(path for path in directory.rglob("*.crt") if path.is_file())
    except OSError:
        return


def _bundled_ders(directory: Path) -> set[bytes]:
    """The certificates of a trust bundle, compared by their bytes only (nothing of them is used)."""
    import base64
    import binascii

    found = set()
    for path in _crt_files(directory):
        try:
            text = path.read_text("ascii", errors="replace")
        except OSError:
            continue
        for block in _PEM_BLOCK.finditer(text):
            try:
                found.add(base64.b64decode("".join(block[2].split()), validate=True))
            except (binascii.Error, ValueError):
                continue
    return found


def host_extra_certificates(extra_dir: Path = HOST_EXTRA_CA_DIR, distro_dir: Path = HOST_DISTRO_CA_DIR) -> list[Certificate]:
    """Certificates this host's admin added to its trust store (update-ca-certificates' local
    directory) and Debian's bundle lacks: usually a company proxy's CA, without which nothing in
    the build reaches the network over HTTPS. Files that are no certificate are left out, as
    update-ca-certificates does."""
    found = []
    for path in _crt_files(extra_dir):
        try:
            found += read_certificates(path)
        except CaiError:
            continue
    if found:
        bundled = _bundled_ders(distro_dir)
        found = [cert for cert in found if cert.der not in bundled]
    return found


def image_file_names(certificates: Iterable[Certificate]) -> dict[str, Certificate]:
    """One `.crt` file a certificate (update-ca-certificates wants exactly one in each), named
    after its source file, the same certificate once. Stable: the same files give the same names
    and bytes, so the engine's layer cache holds."""
    named: dict[str, Certificate] = {}
    seen: set[bytes] = set()
    for cert in certificates:
        if cert.der in seen:
            continue
        seen.add(cert.der)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", cert.source.name.removesuffix(".crt").removesuffix(".pem")) or "ca"
        name, n = f"{stem}.crt", 1
        while name in named:
            n += 1
            name = f"{stem}-{n}.crt"
        named[name] = cert
    return named


# --- the build context --------------------------------------------------------------------------


def definition_hash() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(DEFINITION_DIR.iterdir()):
        if path.is_file() and not path.name.startswith((".", "__")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def context_tar(certificates: dict[str, Certificate]) -> bytes:
    """The image definition plus the certificates, as a tar whose entries have fixed owners, modes
    and times: the builder's cache keys on them, so an unchanged build is all cache hits."""
    import io
    import tarfile

    buffer = io.BytesIO()

    def add(name: str, data: bytes | None, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
        if data is None:
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        else:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(DEFINITION_DIR.iterdir()):
            if path.is_file() and not path.name.startswith((".", "__")):
                add(path.name, path.read_bytes(), 0o644)  # the Dockerfile sets the modes: an install may not keep them
        add(CA_DIR, None, 0o755)
        for name, cert in sorted(certificates.items()):
            add(f"{CA_DIR}/{name}", cert.pem.encode(), 0o644)
    return buffer.getvalue()


# --- the builder's output -----------------------------------------------------------------------

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# The builder's own bookkeeping between a step's output lines.
_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully built |Successfully tagged )")
_SET_E = re.compile(r"^(RUN )set -[a-z]+; ")
# C1 controls too (U+009B is CSI, U+009D OSC): a package's install script writes these lines.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TAIL_LINES = 15

# (pattern in the failed step's output or error, hint): what went wrong, said once.
_CAUSES = (
    (re.compile(r"SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|"
                r"unable to get local issuer certificate|certificate verify failed|self.signed certificate|"
                r"server certificate verification failed", re.IGNORECASE),
     "[HINT] A TLS certificate was not trusted (a TLS-inspecting proxy?): cai image build --ca-cert PROXY-CA.pem"),
    (re.compile(r"pull access denied|repository does not exist|No such image|manifest unknown|"
                r"manifest for .* not found", re.IGNORECASE),
     "[HINT] The base image is missing: pass --base IMAGE (scripts/setup.sh makes a local cai-base:bookworm-…)"),
    (re.compile(r"\bE404\b|\bETARGET\b|No matching version", re.IGNORECASE),
     "[HINT] An agent's npm package or version does not exist: check [agent.NAME] package in the user config"),
    (re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|Could not resolve|"
                r"Temporary failure (in name )?resolving|Network is unreachable|Failed to fetch|Connection timed out",
                re.IGNORECASE),
     "[HINT] The build could not reach the network (Debian's mirror or the npm registry): check the engine's DNS and proxy"),
)


def clean(line: str) -> str:
    """A builder line as one printable line: the last of its carriage-return rewrites, without
    terminal escapes."""
    return _CONTROL.sub("", line.rsplit("\r", 1)[-1]).rstrip()


class Progress:
    """Follows the legacy builder's stream: `Step N/M : INSTRUCTION`, then that step's output."""

    def __init__(self) -> None:
        from collections import deque

        self.step = 0
        self.total = 0
        self.instruction = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, raw: str) -> bool:
        """Take one line; True when it starts a step."""
        line = clean(raw)
        step = _STEP.match(line)
        if step:
            self.step, self.total, self.instruction = int(step[1]), int(step[2]), step[3]
            self.tail.clear()
            return True
        if line.strip() and not _NOISE.match(line):
            self.tail.append(line[-4096:])  # its end is what a failure shows
        return False

    def short_instruction(self, width: int = 72) -> str:
        """The step's instruction on one line, without a leading `set -e;`, cut to `width`."""
        text = _SET_E.sub(r"\1", " ".join(self.instruction.split()))
        return text if len(text) <= width else text[: width - 1] + "…"

    def status(self, width: int) -> str:
        """The one updating line on a terminal: step N of M, and what the step last printed. Shorter
        than `width`: a line that fills the last column wraps on some terminals."""
        if not self.step:
            return ""
        head = f"Step {self.step} of {self.total}: {self.short_instruction(40)}"
        line = f"{head}  {self.tail[-1].strip()}" if self.tail else head
        return line if len(line) < width else line[: max(width - 2, 0)] + "…"

    def failure(self, detail: str) -> CaiError:
        """One error for a failed build: the step, the last lines it printed, and what it means."""
        where = f" at step {self.step}/{self.total} ({self.short_instruction()})" if self.step else ""
        code = re.search(r"returned a non-zero code: (\d+)$", detail)
        said = f"  exit code {code[1]}" if code else f"  {clean(detail)}"
        lines = [f"  {line}" for line in self.tail] + [said]
        searched = "\n".join([*self.tail, detail])
        hints = [hint for pattern, hint in _CAUSES if pattern.search(searched)][:1]
        return CaiError(ExitCode.ERROR, f"Image build failed{where}", *lines, *hints)
