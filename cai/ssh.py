"""Every OpenSSH call: key, readiness, host-key pinning, client config, and the session itself.

Sessions run the system `ssh` with `-v -E LOG`: ssh's own messages go to a private log instead of
the user's stderr, and the log proves whether the command was sent. That is how exit 255 is told
apart: a remote `exit 255` (sent, then 255) is returned as is and never re-run; a transport failure
(never authenticated) is classified and retried.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import signal
import stat
import subprocess
import time
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

from cai import layout, output, proc, userfiles
from cai.errors import CaiError, ExitCode

HOST = "127.0.0.1"
USER = "agent"
WORKDIR = layout.AGENT_WORKSPACE
PORT_RANGE = (2300, 2500)
READY_TIMEOUT_S = 30.0
CONNECT_ATTEMPTS = 3

_HOST_KEY_WORDS = ("host key verification failed", "remote host identification has changed")
_FATAL_WORDS = ("permission denied", "no such identity", "could not resolve hostname", "bad configuration",
                "no route to host", "administratively prohibited")
# Lines of `ssh -v` that mean the remote command was handed to the server.
_SENT_LINES = ("debug1: Sending command", "debug1: Authenticated to",
               "debug1: mux_client_request_session: master session id")
# Consecutive sessions to one container share one connection through an OpenSSH control master
# that outlives the call by this long (CAI_SSH_MULTIPLEX=0 turns it off).
CONTROL_PERSIST_S = 300
# A unix socket path must fit in sun_path (108 bytes on Linux, 104 on macOS), and ssh first
# binds the master's socket at the path plus a 17-character random suffix.
_MAX_CONTROL_PATH = 103 - 17
_ENV_ASSIGNMENT_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*=")
# A user's `Host *` may forward the agent, X11 or ports, or run a LocalCommand: none of that
# belongs on a connection cai makes for itself, to a container whose agent runs untrusted code or
# to an engine host. ssh keeps the first value it sees, and -o comes before every config file.
# NAME.conf, for the user's own `ssh NAME`, leaves all but the agent to the user.
NO_FORWARDING = ("-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ClearAllForwardings=yes",
                 "-o", "PermitLocalCommand=no")


def key_path() -> Path:
    return userfiles.config_dir() / "id_containai"


def known_hosts_path() -> Path:
    return userfiles.config_dir() / "known_hosts"


def host_config_dir() -> Path:
    return userfiles.ssh_dir() / "containai.d"


def config_path_value(path: Path | str, *, expand: str = "") -> str:
    """A path as an ssh_config value: double-quoted (a HOME or TMPDIR with a space), `%` doubled
    (ssh expands %-tokens in these options), then `expand` (raw tokens such as `/%r@%h:%p`)."""
    text = str(path)
    if '"' in text or "\n" in text:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, f"ssh cannot use a path with a quote or a newline: {output.shown(text)}")
    return '"' + text.replace("%", "%%") + expand + '"'


# --- the engine host of an ssh:// context ---------------------------------------------------------

ENGINE_CONNECT_TIMEOUT_S = 3  # below the engine calls' own 4 s, so that ssh's words come first


def engine_dial_argv(destination: str, port: str | None, socket_path: str | None) -> list[str]:
    """`ssh … docker system dial-stdio` on the engine host, as docker-py's transport runs it, with
    the user's own config and agent, never a prompt, and a bounded connect."""
    remote = "docker system dial-stdio" if socket_path is None else \
        f"docker --host {shlex.quote('unix://' + socket_path)} system dial-stdio"
    # Keepalives: an engine connection left behind (a context given up on) ends with its link.
    return [*_to_engine_host(destination, port, "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"), remote]


def _to_engine_host(destination: str, port: str | None, *options: str) -> list[str]:
    """`ssh` to an engine host: never a prompt, a bounded connect, the port only when one is named."""
    return ["ssh", *NO_FORWARDING, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={ENGINE_CONNECT_TIMEOUT_S}",
            *(["-p", str(port)] if port else []), *options, "--", destination]


def split_ssh_url(url: str) -> tuple[str, str | None, str | None]:
    """`ssh://[user@]host[:port][/path]` → (`user@host` as ssh takes it, an IPv6 host without its
    brackets; the port only when named; the path or None). The engine's dial and the jump to a
    container both read the context's URL this way."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    destination = f"{parts.username}@{host}" if parts.username else host
    return (destination, str(parts.port) if parts.port is not None else None,
            parts.path if parts.path not in ("", "/") else None)


def _split_jump(jump: str) -> tuple[str, str | None]:
    """`[user@]host[:port]` (an ssh:// URL's netloc) → (`user@host`, port or None)."""
    destination, port, _ = split_ssh_url(f"ssh://{jump}")
    return destination, port


# --- before anything is created --------------------------------------------------------------

REQUIRED_TOOLS = ("ssh", "ssh-keygen")


def preflight() -> None:
    """What SSH setup will need, checked before a container is created or started: the OpenSSH
    programs, a writable config dir and ~/.ssh, and a readable ~/.ssh/config. Each is exit 12."""
    import shutil

    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, f"{', '.join(missing)} not found on PATH",
                       "Install the OpenSSH client (Debian: apt install openssh-client)")
    for directory in (userfiles.config_dir(), userfiles.ssh_dir(), host_config_dir()):
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CaiError(ExitCode.SSH_SETUP_FAILED, f"Cannot create {output.shown(str(directory))}: {exc.strerror or exc}") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise CaiError(ExitCode.SSH_SETUP_FAILED, f"Not writable: {output.shown(str(directory))}",
                           "cai keeps its SSH key, pinned host keys and per-container ssh config there")
    read_user_config()


# --- key -------------------------------------------------------------------------------------


def ensure_key() -> str:
    """The public key line, generating the ed25519 key pair on first use (never overwriting)."""
    key = key_path()
    pub = key.with_name(key.name + ".pub")
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(key.parent, 0o700)
    with userfiles.file_lock(key.parent / ".key.lock"):
        if not key.exists():
            done = proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-f", str(key), "-N", "", "-C", "containai"], timeout=30)
            if done.rc != 0:
                raise CaiError(ExitCode.SSH_SETUP_FAILED, "Failed to generate SSH key", f"  {done.err.strip()}")
            output.info(f"Generated SSH key: {key}")
        elif not pub.exists():
            output.warn("Private key exists but public key missing, regenerating public key")
            done = proc.run(["ssh-keygen", "-y", "-f", str(key)], timeout=30)
            if done.rc != 0:
                raise CaiError(ExitCode.SSH_SETUP_FAILED, "Failed to derive the public key", f"  {done.err.strip()}")
            userfiles.atomic_write(pub, done.out, mode=0o644)
        os.chmod(key, 0o600)
    return pub.read_text().strip()


# --- endpoints, readiness and host keys ------------------------------------------------------


class Endpoint:
    """How cai reaches one container's sshd: `name` (the `Host` of NAME.conf), the published
    `port`, and `alias`, the HostKeyAlias its host keys are pinned under. The alias is made of the
    engine's context and the container's id, so containers of two engines that share a name or a
    port never share pins or a control socket, and a recreated container is a new endpoint."""

    __slots__ = ("name", "port", "alias", "jump", "bridge")

    def __init__(self, name: str, port: int, alias: str, jump: str | None = None,
                 bridge: Sequence[str] | None = None) -> None:
        self.name, self.port, self.alias = name, port, alias
        self.jump = jump  # `[user@]host[:port]` of an ssh:// engine: its loopback is reached through it
        # The ProxyCommand argv for an engine cai has no ssh to (tcp://): sshd started through the engine.
        self.bridge = tuple(bridge) if bridge else None

    @property
    def proxied(self) -> bool:
        return bool(self.jump or self.bridge)

    @property
    def route(self) -> str:
        """What carries the connection, as ssh's complaints are prefixed with."""
        return self.jump or ("docker exec" if self.bridge else HOST)


def proxy_words(endpoint: Endpoint, port: int | None = None) -> list[str] | None:
    """The ProxyCommand argv to the container's sshd: `ssh -W` through an ssh:// engine's host, or
    the engine's own exec for a tcp:// one; None when the port is on this host. With `port`, the
    words are for running here, else for ssh (which expands %h:%p)."""
    if endpoint.jump:
        return _to_engine_host(*_split_jump(endpoint.jump), "-W", "%h:%p" if port is None else f"{HOST}:{port}")
    if endpoint.bridge:
        return list(endpoint.bridge)
    return None


def proxy_command(endpoint: Endpoint, stderr_path: str | None = None, *, keep_stderr: bool = False) -> str | None:
    """The ProxyCommand option's value. cai's own sessions send its stderr to `stderr_path` (or
    nowhere), not the session's: with a shared connection the proxy lives as long as the master,
    and would hold cai's stderr open. (NAME.conf, for plain ssh, keeps ProxyJump or the bridge.)"""
    words = proxy_words(endpoint)
    if words is None:
        return None
    # ssh expands %-tokens: the jump's own %h:%p stay, anything of the bridge's is literal.
    line = " ".join(shlex.quote(word) if endpoint.jump else _bridge_word(word) for word in words)
    if keep_stderr:
        return line
    sink = "/dev/null" if stderr_path is None else shlex.quote(stderr_path).replace("%", "%%")
    return line + f" 2>{sink}"


def _bridge_word(word: str) -> str:
    """A word of the bridge (the docker CLI's path, its config directory) for an ssh_config line:
    ssh splits the line itself, so a quote (shlex.quote's own `'"'"'` included), backslash or line
    break in it would end the line or the word where cai did not mean it to."""
    if any(char in word for char in "\"'\\") or not word.isprintable():
        raise CaiError(ExitCode.SSH_SETUP_FAILED, f"ssh cannot use this in a ProxyCommand: {output.shown(word)}",
                       "  Move the docker CLI or DOCKER_CONFIG to a path without quotes, backslashes or control characters")
    return shlex.quote(word).replace("%", "%%")


def jump_for(engine_host: str | None) -> str | None:
    """The ProxyJump of an engine endpoint: the same user, host and port docker uses for an
    `ssh://` context; None for a local one."""
    if not engine_host or not engine_host.startswith("ssh://"):
        return None
    from urllib.parse import urlsplit

    return urlsplit(engine_host).netloc or None


def host_key_alias(context: str, container_id: str) -> str:
    return f"cai-{context}-{container_id[:12]}"


def sshd_answers(port: int, timeout: float = 1.0, proxy: Sequence[str] | None = None) -> bool:
    """An SSH server greets on the port (a TCP connect alone would also accept docker-proxy); on
    a remote engine, through `proxy` (see `proxy_words`)."""
    import socket

    if proxy is not None:
        return _greets_through(proxy)
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _greets_through(argv: Sequence[str]) -> bool:
    try:
        child = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return False
    try:
        import select

        ready, _, _ = select.select([child.stdout], [], [], ENGINE_CONNECT_TIMEOUT_S + 2)
        return bool(ready) and os.read(child.stdout.fileno(), 4) == b"SSH-"
    finally:
        child.kill()
        child.wait()


def wait_for_sshd(port: int, is_running, timeout: float = READY_TIMEOUT_S, also=None,
                  proxy: Sequence[str] | None = None) -> None:
    """Until sshd greets on the port (and `also()` holds), for up to `timeout`. A local port is
    asked every 50 ms: a connect to loopback costs next to nothing, and a new container's wait is
    mostly its sshd's host key generation, so a doubling backoff overslept it by seconds. Through
    a proxy, which starts an ssh each time, the wait doubles from 0.1 s to 2 s. Whether the
    container still runs (an engine call) is asked at most once a second."""
    deadline = time.monotonic() + timeout
    delay = 0.05 if proxy is None else 0.1
    asked_running = time.monotonic()
    while not (sshd_answers(port, proxy=proxy) and (also is None or also())):
        now = time.monotonic()
        if now - asked_running >= 1.0 or proxy is not None:
            if not is_running():
                raise CaiError(ExitCode.SSH_SETUP_FAILED, "Container is not running; sshd cannot start")
            asked_running = now
        if now + delay > deadline:
            raise CaiError(ExitCode.SSH_SETUP_FAILED, f"sshd did not become ready within {int(timeout)} seconds",
                           f"  Port: {port}")
        time.sleep(delay)
        if proxy is not None:
            delay = min(delay * 2, 2.0)


def pin_host_keys(alias: str, keys: Sequence[str]) -> None:
    """Make `keys` ("TYPE BASE64", read from the container through the engine) the only ones
    pinned for `alias`, under the lock; unchanged pins are not rewritten."""
    path = known_hosts_path()
    with userfiles.file_lock(path.parent / ".known_hosts.lock"):
        old = path.read_text().splitlines() if path.exists() else []
        fresh = [f"{alias} {key}" for key in keys]
        if [line for line in old if line.split(" ", 1)[0] == alias] == fresh:
            return
        # The file is cai's own: lines of other aliases stay, pins by port from before aliases go.
        kept = [line for line in old if line.split(" ", 1)[0] != alias and line.startswith("cai-")]
        userfiles.atomic_write(path, "\n".join(kept + fresh) + "\n", mode=0o600)


def pinned_lines(alias: str) -> tuple[str, ...]:
    """The known_hosts lines cai pinned for `alias`."""
    try:
        text = known_hosts_path().read_text()
    except OSError:
        return ()
    return tuple(line for line in text.splitlines() if line.split(" ", 1)[0] == alias)


def pinned_keys(alias: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in pinned_lines(alias)]


def forget_host(alias: str) -> None:
    path = known_hosts_path()
    if not path.exists():
        return
    with userfiles.file_lock(path.parent / ".known_hosts.lock"):
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line.split(" ", 1)[0] != alias]
        if kept != lines:
            userfiles.atomic_write(path, "\n".join(kept) + ("\n" if kept else ""), mode=0o600)


# --- client config ---------------------------------------------------------------------------

INCLUDE_LINE = "Include ~/.ssh/containai.d/*.conf"
_INCLUDE_PATTERN = r"(?i)^\s*include\s+[^#]*containai\.d/\*\.conf"  # compiled on first use (re caches it)


def host_block(endpoint: Endpoint) -> list[str]:
    """The `Host NAME` block of NAME.conf, which `cai ssh-config` also prints for tools that do
    not follow `Include` (paramiko, Fabric): every path absolute, and a remote engine's ProxyJump
    or ProxyCommand in it, so the block works on its own."""
    name, port = endpoint.name, endpoint.port
    return [
        f"Host {name}",
        f"    HostName {HOST}",
        "    AddressFamily inet",
        f"    Port {port}",
        f"    User {USER}",
        f"    IdentityFile {config_path_value(key_path())}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {config_path_value(known_hosts_path())}",
        f"    HostKeyAlias {endpoint.alias}",
        *([f"    ProxyJump {endpoint.jump}"] if endpoint.jump else []),
        *([f"    ProxyCommand {proxy_command(endpoint, keep_stderr=True)}"] if endpoint.bridge else []),
        "    StrictHostKeyChecking yes",
        "    PreferredAuthentications publickey",
        "    GSSAPIAuthentication no",
        "    PasswordAuthentication no",
        "    ForwardAgent no",
    ]


def write_host_config(endpoint: Endpoint) -> Path:
    """~/.ssh/containai.d/NAME.conf, and the Include line first in ~/.ssh/config, so `ssh NAME` works."""
    name = endpoint.name
    ssh_dir = userfiles.ssh_dir()
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    conf_dir = host_config_dir()
    conf_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(conf_dir, 0o700)
    body = "\n".join([
        f"# ContainAI SSH config for container: {name}",
        "# Auto-generated - do not edit manually",
        *host_block(endpoint),
        "",
    ])
    target = conf_dir / f"{name}.conf"
    with userfiles.file_lock(ssh_dir / ".containai-config.lock"):
        user_config, lines = read_user_config()
        userfiles.atomic_write(target, body, mode=0o600)
        first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
        if not re.match(_INCLUDE_PATTERN, first):
            rest = [line for line in lines if not re.match(_INCLUDE_PATTERN, line)]
            mode = stat.S_IMODE(user_config.stat().st_mode) if user_config.exists() else 0o600
            userfiles.atomic_write(user_config, "\n".join([INCLUDE_LINE, "", *rest]).rstrip("\n") + "\n", mode=mode)
    return target


def read_user_config() -> tuple[Path, list[str]]:
    """~/.ssh/config's real file (a dotfiles manager's symlink is followed, and the link is kept:
    the file is rewritten beside its target) and its lines. Unreadable or not UTF-8 is exit 12,
    before anything is written."""
    link = userfiles.ssh_dir() / "config"
    real = Path(os.path.realpath(link))
    try:
        return real, real.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        if link.is_symlink():
            raise CaiError(ExitCode.SSH_SETUP_FAILED, f"~/.ssh/config is a symlink to a missing file: {output.shown(str(real))}") from None
        return real, []
    except UnicodeDecodeError as exc:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, f"Cannot read {output.shown(str(real))}: not UTF-8 (byte {exc.start})",
                       "cai adds one Include line to it; fix the file or remove the bad bytes") from None
    except OSError as exc:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, f"Cannot read {output.shown(str(real))}: {exc.strerror or exc}") from None


_PORT_LINE_PATTERN = r"(?im)^\s*Port\s+(\d+)\s*$"
_ALIAS_LINE_PATTERN = r"(?im)^\s*HostKeyAlias\s+(\S+)\s*$"


def configured_port(text: str) -> int | None:
    """The `Port` line of a NAME.conf we wrote."""
    found = re.search(_PORT_LINE_PATTERN, text, re.ASCII)
    return int(found[1]) if found else None


def configured_alias(text: str) -> str | None:
    found = re.search(_ALIAS_LINE_PATTERN, text)
    return found[1] if found else None


def host_config_alias(name: str) -> str | None:
    """The HostKeyAlias of NAME.conf, None when there is no such file (or it predates aliases)."""
    try:
        return configured_alias((host_config_dir() / f"{name}.conf").read_text(errors="replace"))
    except OSError:
        return None


def forget_container(name: str, alias: str) -> None:
    """Drop the pinned keys of `alias`, and NAME.conf when it belongs to that same container: a
    container of the same name on another engine keeps its own."""
    conf = host_config_dir() / f"{name}.conf"
    try:
        text = conf.read_text(errors="replace")
    except OSError:
        text = None
    if text is not None and configured_alias(text) in (alias, None):
        remove_host_config(name)
    forget_host(alias)


def remove_host_config(name: str) -> None:
    try:
        (host_config_dir() / f"{name}.conf").unlink()
    except FileNotFoundError:
        pass


# --- connection sharing ----------------------------------------------------------------------


def multiplexing() -> bool:
    return os.environ.get("CAI_SSH_MULTIPLEX", "1") != "0"


def control_dir() -> Path | None:
    """A private directory for control sockets: $XDG_RUNTIME_DIR/cai, else /tmp/cai-UID. None when
    neither is ours alone (a socket there would let another user run commands in the container)."""
    import stat

    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    temp = os.environ.get("TMPDIR") or "/tmp"
    candidates = ([Path(runtime) / "cai"] if runtime else []) + [Path(temp) / f"cai-{uid}"]
    for directory in candidates:
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            info = directory.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and info.st_mode & 0o077 == 0 \
                and len(str(control_path(directory, Endpoint("", 65535, "")))) <= _MAX_CONTROL_PATH:
            return directory
    return None


def control_path(directory: Path, endpoint: Endpoint) -> Path:
    """One socket per endpoint, short whatever the context's name (a hash of the alias), and named
    with its port, so that every master to a port can be found (two contexts may reach one engine)."""
    import zlib

    data = endpoint.alias.encode()
    return directory / f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}-{endpoint.port}"


# A run that does not share cai's own master must not share the user's either: a `Host *` with
# ControlMaster and ControlPath would carry it over a master to 127.0.0.1:PORT that may be another
# engine's container (a multiplexed session makes no key exchange, so no pinned key is checked).
NOT_SHARED = ("-o", "ControlMaster=no", "-o", "ControlPath=none")


def multiplex_options(directory: Path, endpoint: Endpoint) -> list[str]:
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={config_path_value(control_path(directory, endpoint))}",
            "-o", f"ControlPersist={CONTROL_PERSIST_S}"]


def release_master(endpoint: Endpoint, wait_s: float = 2.0, *, every_on_port: bool = False,
                   keep_checked: bool = False) -> int:
    """Ask this user's control master for the endpoint (or every one on its port) to exit once its
    sessions end, and wait (a little) for it to go: an idle shared connection must not count as
    someone inside. `keep_checked` spares a master made since the host keys were last pinned.
    Returns how many were asked."""
    directory = control_dir()
    if directory is None:
        return 0
    if every_on_port:
        sockets = sorted(directory.glob(f"*-{endpoint.port}"))
    else:
        sockets = [path for path in (control_path(directory, endpoint),) if path.exists()]
    if keep_checked:
        sockets = [path for path in sockets if not _checked_against_pins(path)]
    for socket_path in sockets:
        proc.run([*base_argv(endpoint), "-o", f"ControlPath={config_path_value(socket_path)}", "-O", "stop", HOST], timeout=5)
    deadline = time.monotonic() + wait_s
    while any(path.exists() for path in sockets) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(sockets)


def _checked_against_pins(socket_path: Path) -> bool:
    """Whether the master behind `socket_path` logged in after cai last wrote its pinned host keys:
    its handshake then checked the keys pinned now. (A recreated container is another endpoint,
    and a stopped one takes its master's connection with it.) Both times come from the kernel's
    file clock; a tie counts as older."""
    try:
        return socket_path.lstat().st_ctime_ns > known_hosts_path().stat().st_mtime_ns
    except OSError:
        return False


# Agents run commands in parallel, often right after a container starts. With no master yet,
# every such call would dial sshd at once, and sshd drops connections past its MaxStartups: so
# one caller per endpoint dials, under a lock file beside the control socket, and the others wait
# for the socket to appear (ssh binds it only once the master has logged in) and then use it.
# The bounds are for a dialler that hangs, not for a slow login: 500 calls at once on 2 cores took
# one master 18 s to log in, and a waiter that gives up dials too (sshd's LoginGraceTime is 120 s).
DIAL_HOLD_S = 60.0
DIAL_WAIT_S = 90.0  # longer than the hold: the next waiter takes over from a dialler that failed
POLL_FIRST_S, POLL_MAX_S = 0.01, 0.1  # hundreds of waiters polling must not take the cores they wait on


def _dial_lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def claim_dial(socket_path: Path, interrupted: Sequence[int] = ()) -> int | None:
    """The lock's descriptor when this caller is to dial the master; None when one is up (or came
    up while waiting), when waiting ran out, or when `interrupted` got a signal. A socket that is
    there is trusted: a master removes it when it exits, and ssh replaces one left by a killed
    master itself."""
    if socket_path.exists():
        return None
    import fcntl

    try:
        fd = os.open(_dial_lock_path(socket_path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None  # dial as before: sharing still works, only not the wait
    deadline = time.monotonic() + DIAL_WAIT_S
    delay = POLL_FIRST_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not (socket_path.exists() or interrupted or time.monotonic() >= deadline):
                time.sleep(delay)
                delay = min(delay * 1.5, POLL_MAX_S)
                continue
        else:
            if not socket_path.exists():  # the previous holder's dial failed, or there was none
                return fd
        os.close(fd)
        return None


def hand_over_dial(lock: int, socket_path: Path, child: subprocess.Popen, interrupted: Sequence[int] = ()) -> None:
    """Hold the dial lock until `child`'s master is up (its socket appears), or it ended, or the
    hold ran out; then let the waiters go."""
    try:
        deadline = time.monotonic() + DIAL_HOLD_S
        while child.poll() is None and not interrupted and not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(POLL_FIRST_S)  # one process per endpoint: the waiters see the master at once
    finally:
        os.close(lock)


# --- sessions --------------------------------------------------------------------------------


def base_argv(endpoint: Endpoint, jump_log: str | None = None) -> list[str]:
    """The original's option list (order matters: ssh keeps the first value it sees)."""
    return [
        "ssh", *NO_FORWARDING,
        "-o", f"HostName={HOST}", "-o", f"Port={endpoint.port}", "-o", f"User={USER}",
        "-o", f"HostKeyAlias={endpoint.alias}",
        *(["-o", f"ProxyCommand={proxy_command(endpoint, jump_log)}"] if endpoint.proxied else []),
        "-o", f"IdentityFile={config_path_value(key_path())}", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={config_path_value(known_hosts_path())}", "-o", "StrictHostKeyChecking=yes",
        "-o", "PreferredAuthentications=publickey", "-o", "GSSAPIAuthentication=no",
        "-o", "PasswordAuthentication=no", "-o", "AddressFamily=inet", "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=3",
    ]


def command_words(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(assignments, words) as bash source: leading NAME=value words stay assignments (the value
    quoted), every other word is quoted, so the remote argv is byte-identical."""
    assignments: list[str] = []
    for index, arg in enumerate(argv):
        if not _ENV_ASSIGNMENT_RE.match(arg):
            return assignments, [shlex.quote(word) for word in argv[index:]]
        key, value = arg.split("=", 1)
        assignments.append(f"{key}={shlex.quote(value)}")
    return assignments, []


def login_command(argv: Sequence[str]) -> str:
    """`bash -lc ' <Q>'` of command_words. The leading space makes a first word such as `--help`
    a command, not a bash option."""
    assignments, words = command_words(argv)
    return f"bash -lc {shlex.quote(' ' + ' '.join(assignments + words))}"


def remote_exec_command(argv: Sequence[str], workdir: str | None = None) -> str:
    """The string sshd hands to the agent's bash. `; exit $?` stops bash from exec'ing the last
    command, and the no-op trap stops it from killing itself on a PTY's Ctrl-C: a command killed
    by signal n then ends with status 128+n, as it would locally, instead of ssh's bare 255.
    The outer bash's own stderr goes to /dev/null (its "Killed" report would quote this wrapper);
    the command keeps the real stderr through fd 3, which it does not inherit. The leading mark
    names this run, so that a signalled cai can find its process group (`stop_remote`)."""
    into = f" && cd -- {shlex.quote(workdir)}" if workdir else ""  # a relative one is the workspace's
    mark = f"{_RUN_MARK}{os.urandom(8).hex()}"
    return (f": {mark} && cd {WORKDIR}{into} && trap : INT QUIT && {{ {login_command(argv)} 2>&3 3>&-; }} 3>&2 2>/dev/null; "
            "exit $?")


_RUN_MARK = "cai-run-"
_RUN_MARK_RE = re.compile(r"^: cai-run-([0-9a-f]{16}) ")
# Run by bash as the agent (dash's kill takes no `--`): the oldest process whose argv holds the
# mark is the shell sshd started, which leads the command's process group (sshd makes each
# session's command a session leader). The bracket keeps pgrep from matching this script's shell.
_STOP_SCRIPT = r"""
p=$(pgrep -o -u "$(id -u)" -f "[c]ai-run-$1 ") || exit 0
kill -"$2" -- "-$p" 2>/dev/null
(sleep 1; kill -KILL -- "-$p") >/dev/null 2>&1 </dev/null &
"""


def stop_remote(endpoint: Endpoint, remote: str, signum: int, sharing: Sequence[str] = ()) -> None:
    """Without a PTY, OpenSSH carries no signal and sshd leaves a command running when its client
    goes: so a cai that got SIGTERM, SIGHUP or SIGINT sends it to the remote command's process
    group itself (KILL a second later), through the shared master when there is one."""
    found = _RUN_MARK_RE.match(remote)
    if found is None:
        return
    name = signal.Signals(signum).name.removeprefix("SIG")
    command = f"bash -c {shlex.quote(_STOP_SCRIPT)} cai-stop {found.group(1)} {name}"
    try:
        proc.run_bounded([*base_argv(endpoint), *(sharing or NOT_SHARED), "-n", "-o", "BatchMode=yes", HOST, command],
                         timeout=5, limit=4096, env=_jump_shell(endpoint))  # the agent's shell may print
    except CaiError:
        pass  # cai is ending on a signal: what it could not stop, it cannot report better


REMOTE_SHELL_COMMAND = f"cd {WORKDIR} && exec bash -l"


class Outcome:
    """One session's end. `sent`: the remote command provably reached the server. `signal`: one
    cai received during the session; it ends the command, never retries it."""

    __slots__ = ("rc", "sent", "log", "signal")

    def __init__(self, rc: int, sent: bool, log: str, signal: int | None) -> None:
        self.rc, self.sent, self.log, self.signal = rc, sent, log, signal


_FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _terminal_state() -> list | None:
    import termios

    try:
        return termios.tcgetattr(0)
    except (termios.error, OSError):
        return None


def _restore_terminal(state: list) -> None:
    import termios

    try:
        termios.tcsetattr(0, termios.TCSADRAIN, state)
    except (termios.error, OSError):
        pass


def _log_file(directory: Path | None) -> str:
    """A new private file for ssh's -E log: in the control directory when there is one (that
    spares importing tempfile on the fast path), else in the temp directory."""
    if directory is not None:
        try:
            path = directory / f"log-{os.getpid()}-{os.urandom(4).hex()}"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return str(path)
        except OSError:
            pass
    import tempfile

    fd, path = tempfile.mkstemp(prefix="cai-ssh-", suffix=".log")
    os.close(fd)
    return path


def _relay(source, fd: int):
    """Copy a pipe to one of cai's own file descriptors until EOF, in a daemon thread."""
    import threading

    def pump() -> None:
        try:
            while chunk := os.read(source.fileno(), 65536):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except OSError:  # the reader went away: ssh sees the pipe close, as it would have
            pass
        finally:
            source.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def run_session(endpoint: Endpoint, remote: str, *, tty: str | None, shared: bool = False) -> Outcome:
    """Run one ssh session with inherited stdio. `tty` is None, "-t" or "-tt"; `shared` goes
    through (or starts) the control master. SIGINT, SIGTERM and SIGHUP are passed on to ssh,
    so cai never dies leaving its ssh behind (a master lives on by design)."""
    directory = control_dir() if shared and multiplexing() else None
    sharing = multiplex_options(directory, endpoint) if directory is not None else []
    socket_path = control_path(directory, endpoint) if directory is not None else None
    log_path = _log_file(directory)
    jump_log = _new_private_file(f"{log_path}-jump") if endpoint.proxied else None
    argv = [*base_argv(endpoint, jump_log), *(sharing or NOT_SHARED), "-v", "-E", log_path, *([tty] if tty else []), HOST, remote]
    received: list[int] = []
    child: subprocess.Popen[bytes] | None = None
    saved_terminal = _terminal_state() if tty else None

    def forward(signum, frame):  # noqa: ARG001
        received.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    # A master holds the file descriptors of the sessions it carries until the remote command
    # ends, even when cai and its ssh are gone. Without a PTY, cai relays stdout and stderr itself,
    # so that a signalled cai releases its caller's pipes at once, as a plain ssh session does.
    relayed = bool(sharing) and tty is None
    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED_SIGNALS}
    dial_lock = None
    try:
        dial_lock = claim_dial(socket_path, received) if socket_path is not None else None
        try:
            child = subprocess.Popen(argv, stdout=subprocess.PIPE if relayed else None,
                                     stderr=subprocess.PIPE if relayed else None, env=session_env(endpoint))
        except FileNotFoundError:
            raise CaiError(ExitCode.SSH_CONNECT_FAILED, "ssh is not installed or not in PATH")
        except OSError as exc:
            if exc.errno != errno.E2BIG:
                raise
            # ssh takes the remote command as one argument, which Linux caps at 128 KiB
            raise CaiError(ExitCode.ERROR, f"The command is too long to send ({len(remote.encode())} bytes quoted; "
                           "Linux allows 128 KiB in one argument)",
                           "[HINT] Put it in a script in the workspace and run that: cai exec -- bash script.sh") from None
        relays = [_relay(child.stdout, 1), _relay(child.stderr, 2)] if relayed else []
        if received:  # it arrived before ssh existed
            child.send_signal(received[0])
        if dial_lock is not None:
            lock, dial_lock = dial_lock, None
            hand_over_dial(lock, socket_path, child, received)
        rc = child.wait()
        if not received:
            for thread in relays:
                thread.join()
        elif tty is None:
            stop_remote(endpoint, remote, received[0], sharing)
    finally:
        if dial_lock is not None:  # ssh never started
            os.close(dial_lock)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if saved_terminal is not None:  # ssh resets it itself, unless it was killed
            _restore_terminal(saved_terminal)
        with open(log_path, errors="replace") as fh:
            log = fh.read()
        os.unlink(log_path)
        log += _jump_complaint(endpoint, jump_log)
    if rc < 0:
        rc = 128 - rc
    return Outcome(rc=rc, sent=any(line.startswith(_SENT_LINES) for line in log.splitlines()), log=log, signal=received[0] if received else None)


def _new_private_file(path: str) -> str | None:
    """`path`, made here and now (0600, never through a link): the jump's shell only opens it.
    None when that fails; the jump's words are then lost, not written somewhere else."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError:
        return None
    return path


def _jump_complaint(endpoint: Endpoint, jump_log: str | None) -> str:
    """What the jump or bridge said (a refused login or forward, the docker CLI's error), as lines
    of the session's log, named by what carried the connection (Endpoint.route). A master's jump lives on and may still write to the unlinked file."""
    if jump_log is None:
        return ""
    try:
        fd = os.open(jump_log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            said = os.read(fd, 16384).decode(errors="replace") if stat.S_ISREG(os.fstat(fd).st_mode) else ""
        finally:
            os.close(fd)
        os.unlink(jump_log)
    except OSError:
        return ""
    return "".join(f"\n{endpoint.route}: {line}" for line in said.splitlines() if line.strip())[-2000:]


def _jump_shell(endpoint: Endpoint) -> dict[str, str] | None:
    """ssh runs a ProxyCommand with $SHELL, and the jump's is written for a POSIX shell (a csh
    user's `2>file` would break the tunnel)."""
    return {"SHELL": "/bin/sh"} if endpoint.proxied else None


def session_env(endpoint: Endpoint) -> dict[str, str] | None:
    """The environment for an ssh of this endpoint that Popen starts (None: this one's)."""
    overrides = _jump_shell(endpoint)
    return proc.child_env(overrides) if overrides else None


def run_captured(endpoint: Endpoint, remote: str, *, timeout: float | None, limit: int,
                 input: str | None = None) -> proc.Result:
    """A short non-interactive session with its output captured, each stream up to `limit` bytes
    (the agent writes it: more is proc.RC_TOO_LONG, never the host's memory). `input` goes to the
    remote command's stdin (none without it); None as `timeout` waits as long as it takes."""
    argv = [*base_argv(endpoint), *NOT_SHARED, *(["-n"] if input is None else []), "-o", "BatchMode=yes", HOST, remote]
    return proc.run_bounded(argv, timeout=timeout, limit=limit, env=_jump_shell(endpoint), input=input)


def failure_kind(outcome: Outcome) -> str:
    """For an ssh 255 that never sent the command: host_key, fatal or transient."""
    text = outcome.log.lower()
    if any(words in text for words in _HOST_KEY_WORDS):
        return "host_key"
    if any(words in text for words in _FATAL_WORDS):
        return "fatal"
    return "transient"


def error_lines(log: str) -> list[str]:
    """ssh's own complaint, without its debug chatter."""
    return [f"  {line}" for line in log.splitlines() if line.strip() and not line.startswith(("debug", "OpenSSH_", "Transferred:"))][-5:]
