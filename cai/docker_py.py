"""docker-py, imported once and mended where it breaks for cai.

Each repair below says which docker-py behaviour it repairs. They replace or call private names
of the docker-py releases pyproject.toml admits; tests/unit/test_docker_py_patches.py fails,
naming the repair, when an installed docker-py lacks one. Nothing here knows cai's policy: the
engine layer (engine.py) is the only caller.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


class DialFailed(Exception):
    """The system ssh for an ssh:// engine could not be started; engine.classify names it."""


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path(os.environ.get("HOME") or Path.home()) / ".docker")


_sdk_ready = False


def sdk() -> Any:
    """Import docker-py, once, with its context store where the docker CLI keeps it:
    $DOCKER_CONFIG/contexts, else ~/.docker/contexts, whether or not a config.json is there.

    docker-py 7.2 puts the store beside the first config file it finds: ./contexts when there is
    none (`docker context create` never writes one), HOME/contexts beside a legacy ~/.dockercfg,
    and ~/.docker/contexts when $DOCKER_CONFIG has no config.json. Each time a named context
    vanished and cai resolved `default`, another engine.
    """
    global _sdk_ready
    if not _sdk_ready:
        _import_without_paramiko()
        import docker.context.config as context_config

        def find_config_file(config_path: str | None = None) -> str:
            return str(Path(config_path)) if config_path else str(docker_config_dir() / "config.json")

        context_config.find_config_file = find_config_file
        _sdk_ready = True
    import docker

    return docker


def _import_without_paramiko() -> None:
    """docker-py imports its paramiko transport at import (120 ms of every engine command), which
    cai never uses: an ssh:// client goes through the system ssh, and `load_ssh_transport` loads
    docker-py's module for that when such a client is made."""
    import sys

    blocked = "paramiko" not in sys.modules
    if blocked:
        sys.modules["paramiko"] = None  # type: ignore[assignment]  # `import paramiko` fails at once
    try:
        import docker  # noqa: F401
    finally:
        if blocked and sys.modules.get("paramiko", False) is None:
            del sys.modules["paramiko"]


_ssh_ready = False


def load_ssh_transport() -> None:
    """docker-py's ssh transport, loaded and mended, for an ssh:// client."""
    global _ssh_ready
    if not _ssh_ready:
        import sys
        import types

        import docker.api.client as api_client

        # The module imports paramiko (140 ms) for its other transport alone, which cai never
        # asks for (use_ssh_client is always set): a placeholder stands in while it loads.
        real = sys.modules.get("paramiko")
        sys.modules["paramiko"] = real or types.ModuleType("paramiko")
        try:
            import docker.transport.sshconn as sshconn
        finally:
            if real is None:
                del sys.modules["paramiko"]

        api_client.SSHHTTPAdapter = sshconn.SSHHTTPAdapter  # its import failed without paramiko
        _patch_ssh_transport()
        _ssh_ready = True


# ssh:// engines. docker-py's paramiko transport ignores ProxyJump, the agent's keys in some
# setups and the user's known_hosts rules, so cai uses its other transport (use_ssh_client: the
# system `ssh`, running `docker system dial-stdio` on the engine host), mended where it breaks:
#   - its socket is a pipe pair behind a dummy TCP socket: timeouts never apply, close() writes to
#     an ssh that may have exited (a broken pipe after every finished `exec`), and urllib3 cannot
#     see a dead connection. cai gives ssh one end of a socketpair and docker-py the other;
#   - it makes a new pool, so a new ssh login, for every request: cai keeps one per client;
#   - it always passes `-p 22` (its URL parser adds the port), which beats the ssh config's
#     `Port`, and refuses a socket path. cai dials what the context's URL says (`DialTarget`).
# The argv comes from ssh.engine_dial_argv: batch mode, a short connect timeout and keepalives (a
# dead host fails in seconds, not minutes), and ssh's messages kept for the error.
_DIALS = threading.local()  # .recent: (ssh process, its stderr) of this thread's latest engine connections


@dataclass(frozen=True)
class DialTarget:
    """What a context's `ssh://[user@]host[:port][/socket]` names, as ssh and docker take it."""

    destination: str  # user@host, an IPv6 host without brackets
    port: str | None  # only when the URL names one
    socket_path: str | None


def dial_target(url: str) -> DialTarget:
    from cai import ssh

    return DialTarget(*ssh.split_ssh_url(url))


def thread_dials() -> list[tuple[Any, Any]]:
    # Per thread: a request and the ssh it dialled run in one thread, and contexts asked side by
    # side must not tell each other's failures.
    recent = getattr(_DIALS, "recent", None)
    if recent is None:
        recent = _DIALS.recent = []
    return recent


def _patch_ssh_transport() -> None:
    import signal
    import socket
    import subprocess
    import tempfile

    import docker.transport.sshconn as sshconn
    import urllib3.connectionpool

    from cai import ssh

    class DialSocket(socket.socket):
        """docker-py's end of a socketpair; ssh's stdin and stdout are the other end."""

        proc: Any = None

        def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
            # A one-byte buffer: http.client reads the headers and nothing past them, so that
            # docker-py can read a hijacked stream (exec, attach) from the socket itself.
            reader = super().makefile(mode, buffering=1 if "b" in mode else buffering, **kwargs)
            reader.channel = self  # where docker-py looks for an ssh connection's socket
            return reader

        def _real_close(self, *args: Any) -> None:  # the last reference, response bodies included
            super()._real_close(*args)  # type: ignore[misc]
            if self.proc is None:
                return
            try:  # an ssh that failed, or whose engine closed (an exec's end), is on its way out
                self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                self.proc.cai_closed = True  # its exit is not a failure to report
                self.proc.terminate()

    def connect(self: Any) -> None:
        target: DialTarget = self.cai_dial
        ours, theirs = socket.socketpair()
        log = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(
                ssh.engine_dial_argv(target.destination, target.port, target.socket_path),
                env={k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SSL_CERT_FILE")},
                stdin=theirs, stdout=theirs, stderr=log,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            )
        except OSError as exc:
            ours.close()
            detail = "ssh is not installed or not on PATH" if isinstance(exc, FileNotFoundError) else f"ssh: {exc}"
            raise DialFailed(detail) from None
        finally:
            theirs.close()
        sock = DialSocket(fileno=ours.detach())
        sock.proc = proc
        sock.settimeout(self.timeout)
        recent = thread_dials()
        recent.append((proc, log))
        del recent[:-8]
        self.sock = sock

    def get_connection(self: Any, url: str, proxies: Any = None) -> Any:
        # One pool for the client: docker-py's own key is the request's whole URL.
        with self.pools.lock:
            pool = self.pools.get("ssh")
            if pool is None:
                pool = sshconn.SSHConnectionPool(timeout=self.timeout, maxsize=self.max_pool_size, host=self.ssh_host)
                pool.cai_dial = getattr(self, "cai_dial", None) or dial_target(f"ssh://{self.ssh_host}")
                self.pools["ssh"] = pool
        return pool

    def new_conn(self: Any) -> Any:
        conn = sshconn.SSHConnection(None, self.timeout, self.ssh_host)
        conn.cai_dial = self.cai_dial
        return conn

    base_get_conn = urllib3.connectionpool.HTTPConnectionPool._get_conn

    def get_conn(self: Any, timeout: float | None = None) -> Any:
        # urllib3's own: it drops a pooled connection whose ssh has gone (its socket reads EOF).
        conn = base_get_conn(self, timeout)
        if conn.sock is not None:  # a streamed response left it without one (docker-py's doing)
            conn.sock.settimeout(self.timeout)
        return conn

    sshconn.SSHConnection.connect = connect
    sshconn.SSHHTTPAdapter.get_connection = get_connection
    sshconn.SSHConnectionPool._new_conn = new_conn
    sshconn.SSHConnectionPool._get_conn = get_conn


def ssh_complaint() -> str:
    """The last thing ssh said on this thread's latest engine connection that ended in failure
    ("" when none did), taken: a later failure of another engine is not told in its words."""
    recent = thread_dials()
    deadline = time.monotonic() + 0.5  # a failing ssh may still be on its way out
    for index in range(len(recent) - 1, -1, -1):
        process, log = recent[index]
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - still running: that connection did not fail
            continue
        # 0 is a clean end; 255 or a signal after cai closed the connection is cai's own SIGTERM
        # (a failing ssh that cai closed while it was exiting keeps its own code, 127 for example).
        if process.returncode == 0 or (getattr(process, "cai_closed", False) and process.returncode in (255, -15)):
            continue
        try:
            log.seek(0)
            lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            continue
        if lines:
            del recent[index]
            return lines[-1][:300]
    return ""


def client_kwargs(host: str, tls: Any) -> dict[str, Any]:
    """APIClient arguments for an endpoint: ssh:// through the system ssh (see `attach_dial`)."""
    if not host.startswith("ssh://"):
        return {"base_url": host, **({"tls": tls} if tls is not None else {})}
    from urllib.parse import urlsplit

    return {"base_url": f"ssh://{urlsplit(host).netloc}", "use_ssh_client": True}  # docker-py refuses a path


def keep_context_ca(client: Any) -> None:
    """A context's own CA verifies its engine. requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    replace it for each request (docker-py #2433), so where those are set (many corporate and CI
    machines) the engine's certificate failed to verify, while the docker CLI accepted it."""
    ca = getattr(client, "verify", None)
    if not isinstance(ca, str):
        return
    merge = client.merge_environment_settings

    def merge_keeping_ca(*args: Any, **kwargs: Any) -> dict[str, Any]:
        settings = merge(*args, **kwargs)
        settings["verify"] = ca
        return settings

    client.merge_environment_settings = merge_keeping_ca


def attach_dial(client: Any, host: str) -> None:
    """What this client's connections dial: the context's own URL, port and socket path."""
    if host.startswith("ssh://"):
        client._custom_adapter.cai_dial = dial_target(host)


def local_getter(api: Any) -> Callable[[str, float], Any] | None:
    """GET through docker-py's own connection pool, past requests: for an engine on a local socket,
    an inspect costs 0.6 ms instead of 1.3 here, and a gc or ps of many containers is mostly
    inspects. docker-py offers no such path; None for other transports (ssh:// and TLS keep
    docker-py's). The getter takes an API path without its version prefix and a timeout, and
    returns urllib3's response."""
    import docker.transport.unixconn as unixconn

    url = api._url("/containers/json")
    adapter = api.get_adapter(url)
    if not isinstance(adapter, unixconn.UnixHTTPAdapter):
        return None
    pool = adapter.get_connection(url)
    prefix = f"/v{api.api_version}"

    def get(path: str, timeout: float) -> Any:
        return pool.urlopen("GET", prefix + path, timeout=timeout, retries=False, preload_content=True)

    return get


def archive_stat(api: Any, container: str, path: str, timeout: float) -> dict[str, Any] | None:
    """The archive API's stat of `path` (a HEAD request), or None when it does not exist.
    docker-py only offers it together with the archive itself (get_archive)."""
    docker = sdk()
    found = api.head(api._url("/containers/{0}/archive", container), params={"path": path}, timeout=timeout)
    if found.status_code == 404:
        return None
    api._raise_for_status(found)
    return docker.utils.decode_json_header(found.headers.get("X-Docker-Container-Path-Stat") or "e30=")
