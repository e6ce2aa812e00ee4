"""Every Docker call: the context, SDK clients pinned to it, and the docker CLI argv.

Commands get frozen records, never SDK objects. Every SDK and requests failure is classified here
into one `CaiError` (reference §1.5), so callers never parse messages. docker and requests are
imported only when a call needs them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

from cai import docker_py, layout, output
from cai.docker_py import docker_config_dir  # the docker CLI's, which docker_py also uses
from cai.errors import CaiError, ExitCode

DEDICATED_CONTEXT = "containai-docker"
DEFAULT_CONTEXT = "default"
# Pinned so that a client costs no version round trip; every engine since 20.10 speaks it.
API_VERSION = "1.41"
# Metadata calls (ping, inspect, list) must fail within the 5 s the spec allows.
QUICK_TIMEOUT_S = 4.0
SLOW_TIMEOUT_S = 120.0
# Root by number: cai's tiny helper image has no /etc/passwd to look "root" up in.
ROOT = "0:0"

# The original's first lines. Its hints named DOCKER_CONTEXT / DOCKER_HOST, which cai ignores on
# purpose, so a context failure says which context and why instead (the detail).
_CLASSIFIED = {
    "no_cli": ("Docker is not installed or not in PATH",),
    "timeout": ("Docker command timed out", "  Check that the engine behind the Docker context answers"),
    "permission": ("Permission denied accessing Docker", "  Ensure Docker Desktop is running, or add user to docker group"),
    "not_running": ("Docker Desktop is not running", "  Start Docker Desktop and try again"),
    "context": ("Docker context or connection issue",),
    "unknown": ("Docker daemon is not accessible",),
    "ssh": ("Cannot reach the Docker engine over SSH",),
    "tls": ("The Docker engine's TLS connection failed", "  Check the context's CA, certificate and key: docker context inspect"),
}
_NOT_RUNNING_RE = re.compile(
    r"daemon.*not running|connection refused|is the docker daemon running|cannot connect|no such file or directory",
    re.IGNORECASE,
)
_CONTEXT_RE = re.compile(r"context|DOCKER_HOST|socket", re.IGNORECASE)


class EngineUnavailable(CaiError):
    """The engine behind a context could not be reached; `kind` is the §1.5 class."""

    def __init__(self, kind: str, detail: str = "") -> None:
        first, *rest = _CLASSIFIED[kind]
        if kind == "not_running" and sys.platform.startswith("linux"):  # the original's two lines point at Docker Desktop
            rest.append("  On Linux, start the engine: sudo systemctl start docker (or run dockerd)")
        extra = [f"[ERROR] {line}" for line in rest]
        if kind in ("unknown", "context", "ssh", "tls") and detail:
            extra.append(f"[ERROR]   {detail}")
        if kind == "ssh" and "not found" in detail.lower() and "docker" in detail.lower():
            extra.append("[ERROR]   The engine host has no `docker` on the PATH of a non-interactive ssh login "
                         "(see: ssh HOST 'echo $PATH'); link it into /usr/bin there")
        super().__init__(ExitCode.ERROR, first, *extra)
        self.kind = kind
        self.detail = detail


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        nested = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        current = current.__cause__ or current.__context__ or (nested[0] if nested else None)
    return chain


def classify(exc: BaseException) -> EngineUnavailable:
    """Map an SDK/requests/socket failure to the original's message classes, first match wins."""
    import socket

    chain = _exception_chain(exc)
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    names = {type(e).__name__ for e in chain}
    detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    dial = next((e for e in chain if isinstance(e, docker_py.DialFailed)), None)
    if dial is not None:
        return EngineUnavailable("ssh", str(dial))
    complaint = docker_py.ssh_complaint()
    if complaint:  # an ssh:// engine: ssh's own words say what went wrong
        return EngineUnavailable("ssh", complaint)
    import ssl

    refused = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    if refused is not None:  # its own words, not urllib3's retry summary with the whole URL
        return EngineUnavailable("tls", str(refused)[:300])
    if names & {"Timeout", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError", "ConnectTimeoutError"} or any(
        isinstance(e, (socket.timeout, TimeoutError)) for e in chain
    ):
        return EngineUnavailable("timeout", detail)
    if any(isinstance(e, PermissionError) for e in chain) or "permission denied" in text.lower():
        return EngineUnavailable("permission", detail)
    if any(isinstance(e, (ConnectionRefusedError, FileNotFoundError)) for e in chain) or _NOT_RUNNING_RE.search(text):
        return EngineUnavailable("not_running", detail)
    if names & {"ContextNotFound", "ContextException"} or _CONTEXT_RE.search(text):
        return EngineUnavailable("context", detail)
    return EngineUnavailable("unknown", detail)


# --- contexts --------------------------------------------------------------------------------


# The names cai accepts: the original's rule, stricter than the docker CLI's (no `.` or `+`).
CONTEXT_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")


def valid_context_name(name: str) -> bool:
    return 0 < len(name) <= 64 and bool(CONTEXT_NAME_RE.match(name))


def context_endpoint(name: str) -> str | None:
    """The docker endpoint of a context, or None when no such context exists."""
    if name == DEFAULT_CONTEXT:
        return "unix:///var/run/docker.sock"
    if not valid_context_name(name):
        return None
    docker_py.sdk()
    from docker.context import ContextAPI

    try:
        ctx = ContextAPI.get_context(name)
    except Exception:  # a corrupt meta.json is "no usable context"
        return None
    return ctx.Host if ctx is not None else None


def is_remote(engine: "Engine") -> bool:
    """The engine's host is another machine (ssh://, tcp://): host paths mean nothing there."""
    return not engine.endpoint().startswith(("unix://", "npipe://"))


def context_exists(name: str) -> bool:
    return context_endpoint(name) is not None


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    context: str
    status: str
    image: str
    image_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    started_at: str = ""
    finished_at: str = ""
    exec_ids: tuple[str, ...] = ()
    stop_timeout: int = 10
    pid: int = 0
    workspace_mount: Mapping[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any], context: str) -> "Container":
        state = data.get("State") or {}
        cfg = data.get("Config") or {}
        return cls(
            id=data.get("Id", ""),
            name=(data.get("Name") or "").lstrip("/"),
            context=context,
            status=state.get("Status", ""),
            image=cfg.get("Image", ""),
            image_id=data.get("Image", ""),
            labels=dict(cfg.get("Labels") or {}),
            created=data.get("Created", ""),
            started_at=state.get("StartedAt", ""),
            finished_at=state.get("FinishedAt", ""),
            exec_ids=tuple(data.get("ExecIDs") or ()),
            stop_timeout=int(cfg.get("StopTimeout") or 10),
            pid=int(state.get("Pid") or 0),
            workspace_mount=workspace_mount(data.get("Mounts")),
        )


def workspace_mount(mounts: Any) -> dict[str, str]:
    """What the workspace directory is, from inspect's or the list's Mounts: {"type": "bind",
    "source": a path on the engine's host} or {"type": "volume", "source": its name}; {} if neither."""
    for mount in mounts if isinstance(mounts, list) else ():
        if isinstance(mount, dict) and mount.get("Destination") == layout.AGENT_WORKSPACE:
            kind = mount.get("Type")
            source = mount.get("Name") if kind == "volume" else mount.get("Source")
            if kind in ("bind", "volume") and isinstance(source, str):
                return {"type": kind, "source": source}
    return {}


@dataclass(frozen=True)
class EngineInfo:
    context: str
    endpoint: str
    version: str
    api_version: str
    system_time: str = ""


# --- the engine ------------------------------------------------------------------------------


_CLIENTS: dict[tuple[str, str, str, float], Any] = {}
_CLIENTS_LOCK = threading.Lock()


class Engine:
    """One Docker engine, reached through one named context."""

    def __init__(self, context: str) -> None:
        self.context = context
        self._target: tuple[str, Any, Any] | None = None  # (host, TLS config, the context) once read

    def endpoint(self) -> str:
        host = context_endpoint(self.context)
        if host is None:
            raise EngineUnavailable("context", f"Docker context not found: {self.context}")
        return host

    def api(self, timeout: float = QUICK_TIMEOUT_S) -> Any:
        """The low-level APIClient for this context (dicts in, dicts out). Clients are shared in
        the process, one per endpoint and timeout, whichever Engine asks: on an ssh:// engine a
        new client is a new login to the engine host. The context is read once per Engine, so a
        context changed meanwhile (the tests do) is seen by the next Engine."""
        host, tls, ctx = self._resolve()
        identity = None if tls is None else (getattr(tls, "ca_cert", None), getattr(tls, "cert", None),
                                             getattr(tls, "verify", None))
        key = (self.context, host, repr(identity), timeout)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                docker = docker_py.sdk()
                kwargs = docker_py.client_kwargs(host, tls)
                if kwargs.get("use_ssh_client"):
                    docker_py.load_ssh_transport()
                try:
                    client = docker.APIClient(version=API_VERSION, timeout=timeout, **kwargs)
                    docker_py.attach_dial(client, ctx.Host if ctx else "")
                    docker_py.keep_context_ca(client)
                except Exception as exc:
                    raise classify(exc) from exc
                _CLIENTS[key] = client
            return _CLIENTS[key]

    def _resolve(self) -> tuple[str, Any, Any]:
        if self._target is None:
            docker_py.sdk()
            from docker.context import ContextAPI

            ctx = ContextAPI.get_context(self.context) if self.context != DEFAULT_CONTEXT else None
            if self.context != DEFAULT_CONTEXT and ctx is None:
                raise EngineUnavailable("context", f"Docker context not found: {self.context}")
            self._target = (ctx.Host if ctx else "unix:///var/run/docker.sock", ctx.TLSConfig if ctx else None, ctx)
        return self._target

    def call(self, method: str, *args: Any, timeout: float = QUICK_TIMEOUT_S, **kwargs: Any) -> Any:
        """Call an APIClient method; engine failures become a classified CaiError. NotFound passes."""
        docker = docker_py.sdk()
        try:
            return getattr(self.api(timeout), method)(*args, **kwargs)
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            raise CaiError(ExitCode.ERROR, f"Docker engine error: {_api_message(exc)}") from exc
        except CaiError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def info(self) -> EngineInfo:
        version = self.call("version")
        return EngineInfo(
            context=self.context,
            endpoint=self.endpoint(),
            version=version.get("Version", ""),
            api_version=version.get("ApiVersion", ""),
        )

    def system_time(self) -> str:
        return self.call("info").get("SystemTime", "")

    def inspect_container(self, name: str) -> Container | None:
        docker = docker_py.sdk()
        try:
            return Container.from_inspect(self.call("inspect_container", name), self.context)
        except docker.errors.NotFound:
            return None

    def inspect_raw(self, name: str) -> dict[str, Any] | None:
        """The engine's own inspect document, as `docker inspect` prints it."""
        docker = docker_py.sdk()
        try:
            return self.call("inspect_container", name)
        except docker.errors.NotFound:
            return None

    def image_exists(self, reference: str) -> bool:
        return self.image_labels(reference) is not None

    def image_labels(self, reference: str) -> dict[str, str] | None:
        """The image's labels ({} when it has none), or None when there is no such image."""
        docker = docker_py.sdk()
        try:
            config = self.call("inspect_image", reference).get("Config") or {}
        except docker.errors.NotFound:
            return None
        return dict(config.get("Labels") or {})


def _api_message(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()


# --- the docker CLI --------------------------------------------------------------------------


def require_docker_cli() -> str:
    path = shutil.which("docker")
    if path is None:
        raise EngineUnavailable("no_cli")
    return path


def docker_argv(context: str, *args: str) -> list[str]:
    """`docker --context C ARGS…`; run it with `cli_env()` so DOCKER_HOST/DOCKER_CONTEXT cannot win."""
    return ["docker", "--context", context, *args]


SSHD_INETD = ("/usr/sbin/sshd", "-i")


def needs_bridge(host: str | None) -> bool:
    """An engine endpoint whose host cai has no ssh to (tcp://, TLS or not)."""
    return bool(host) and host.startswith("tcp://")


def sshd_bridge_argv(context: str, container_id: str, host: str | None) -> list[str] | None:
    """How ssh reaches a container on such an engine: the container's sshd in inetd mode, as root
    (by number, as every root exec of cai's) outside the agent's directories, its stdio carried by
    the engine's own exec, so that no port is ever published beyond the engine host's loopback.
    None for other engines. The docker CLI and its config by absolute path: NAME.conf's
    ProxyCommand also runs from cron's PATH and environment. `--context` wins over an ambient
    DOCKER_HOST in the CLI."""
    if not needs_bridge(host):
        return None
    return [os.path.abspath(require_docker_cli()), "--config", str(docker_config_dir().absolute()),
            *docker_argv(context, "exec", "-i", "-u", ROOT, "-w", "/", container_id, *SSHD_INETD)[1:]]


def docker_exec_argv(context: str, container_id: str, *, user: str, workdir: str, environment: Mapping[str, str],
                     tty: bool, command: list[str]) -> list[str]:
    """`docker exec` as another user than the agent (whom sshd alone logs in): the CLI owns the
    terminal, and the command's code is docker's. A login shell, as over ssh."""
    import shlex

    words = [f"--env={key}={value}" for key, value in environment.items()]
    return [require_docker_cli(), *docker_argv(context, "exec", "-i", *(["-t"] if tty else []), f"--user={user}",
                                               f"--workdir={workdir}", *words, "--", container_id,
                                               "bash", "-lc", " " + shlex.join(command))[1:]]


def cli_env() -> dict[str, str | None]:
    from cai.proc import AMBIENT_DOCKER_VARS

    return {var: None for var in AMBIENT_DOCKER_VARS}


class BuildFailed(CaiError):
    """The builder stopped: `detail` is its own error text, for the caller to place in context."""

    def __init__(self, detail: str) -> None:
        super().__init__(ExitCode.ERROR, f"Image build failed: {detail}")
        self.detail = detail


def build_image(engine: Engine, context_tar: bytes, tag: str, buildargs: Mapping[str, str], labels: Mapping[str, str],
                on_line: Any) -> str:
    """Build from a tar of the build context with the engine's builder (no registry needed when
    the base is local), its layer cache used. `on_line` receives each line of the builder's
    output, whole. Returns the image id."""
    import io

    docker = docker_py.sdk()
    image_id = ""
    pending = ""
    try:
        stream = engine.api(SLOW_TIMEOUT_S * 5).build(
            fileobj=io.BytesIO(context_tar), custom_context=True, tag=tag, buildargs=dict(buildargs),
            labels=dict(labels), rm=True, forcerm=True, pull=False, decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                if pending:
                    on_line(pending)
                raise BuildFailed(str(chunk["error"]).strip())
            # A chunk may hold several lines or part of one; a pull of the base says one "status" each.
            pending += chunk.get("stream") or ""
            *lines, pending = pending.split("\n")
            for line in lines:
                on_line(line)
            if len(pending) > 1 << 16:  # a script's endless line: what shows of a line is its end anyway
                pending = pending[-(1 << 16):]
            if chunk.get("status"):
                on_line(" ".join(str(chunk[key]) for key in ("status", "id", "progress") if chunk.get(key)))
            image_id = (chunk.get("aux") or {}).get("ID", image_id)
        if pending:
            on_line(pending)
    except CaiError:
        raise
    except docker.errors.APIError as exc:
        raise BuildFailed(_api_message(exc)) from exc
    except Exception as exc:
        raise classify(exc) from exc
    return image_id


@dataclass(frozen=True)
class CreateSpec:
    name: str
    image: str
    hostname: str
    labels: Mapping[str, str]
    ssh_port: int
    workspace: str
    volume: str
    memory: str
    cpus: float
    stop_timeout: int
    pids_limit: int
    environment: Mapping[str, str] = field(default_factory=dict)
    restart_policy: Mapping[str, Any] | None = None
    workspace_must_exist: bool = False  # `workspace` is a path on the engine's host (--remote-path)


def _with_engine_errors(engine: "Engine", action: str, fn: Any, timeout: float = SLOW_TIMEOUT_S) -> Any:
    docker = docker_py.sdk()
    try:
        return fn(engine.api(timeout))
    except docker.errors.APIError as exc:
        raise CaiError(ExitCode.ERROR, f"{action}: {_api_message(exc)}") from exc
    except CaiError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def list_containers(engine: "Engine", label_filters: list[str], **filters: list[str]) -> list[dict[str, Any]]:
    """One sparse list call (labels included), all states unless a `status` filter says otherwise."""
    return engine.call("containers", all=True, filters={"label": label_filters, **filters})


def inspect_many(engine: "Engine", ids: list[str], workers: int = 8) -> dict[str, Container]:
    """Inspect containers side by side (a bounded fan-out: the list call has no timestamps).
    Containers that vanished meanwhile are left out. Daemon threads, not a pool's: the interpreter
    joins a pool's workers at exit, so an engine that trickles its answers would hold cai open
    after a caller (--all-contexts) has given up on it."""
    import queue

    inspect = _pooled_inspect(engine) or engine.inspect_container  # one client for all threads, made first
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for container_id in ids:
        todo.put(container_id)
    found: dict[str, Container] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        while not failures:
            try:
                container_id = todo.get_nowait()
            except queue.Empty:
                return
            try:
                record = inspect(container_id)
            except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread
                with lock:
                    failures.append(exc)
                return
            if record is not None:
                with lock:
                    found[record.id] = record

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(workers, len(ids))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return found


def _pooled_inspect(engine: "Engine") -> Any:
    """Inspect through docker_py.local_getter on a local socket; None elsewhere."""
    import json
    from urllib.parse import quote

    get = docker_py.local_getter(engine.api())  # engine.api() first: it imports docker-py without paramiko
    if get is None:
        return None

    def inspect(container_id: str) -> Container | None:
        try:
            response = get(f"/containers/{quote(container_id, safe='')}/json", QUICK_TIMEOUT_S)
        except Exception as exc:
            raise classify(exc) from exc
        if response.status == 404:
            return None
        if response.status != 200:
            try:
                message = json.loads(response.data).get("message")
            except (ValueError, AttributeError):
                message = None
            said = message if isinstance(message, str) else response.data[:200].decode(errors="replace")
            raise CaiError(ExitCode.ERROR, f"Docker engine error: {output.shown(said)}")
        return Container.from_inspect(json.loads(response.data), engine.context)

    return inspect


def list_images(engine: "Engine") -> list[dict[str, Any]]:
    return engine.call("images")


def remove_stopped_container(engine: "Engine", container_id: str) -> bool:
    """`docker rm` without force, so the engine itself refuses a container that is running by
    now. False when it is already gone."""
    docker = docker_py.sdk()
    try:
        engine.api(SLOW_TIMEOUT_S).remove_container(container_id, force=False, v=False)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        raise CaiError(ExitCode.ERROR, _api_message(exc)) from exc
    except Exception as exc:
        raise classify(exc) from exc


def remove_image(engine: "Engine", reference: str) -> None:
    """`docker rmi` without force: an image a container uses stays."""
    _with_engine_errors(engine, f"Failed to remove image {reference}",
                        lambda api: api.remove_image(reference, force=False, noprune=False))


def ensure_volume(engine: "Engine", name: str) -> None:
    if not volume_exists(engine, name):
        _with_engine_errors(engine, f"Failed to create volume {name}", lambda api: api.create_volume(name))


# Root in an agent container keeps only what sshd, the image's init and `cai exec -u root --
# apt-get install` were seen to need (tests/integration/test_agent_walls.py), out of Docker's
# default 14; the agent itself (uid 1000, no-new-privileges) has none either way.
AGENT_CAPABILITIES = (
    "SETUID", "SETGID",  # sshd's privilege separation and its switch to the agent; apt's _apt sandbox
    "SYS_CHROOT",  # sshd's pre-authentication child chroots to /run/sshd
    "CHOWN",  # sshd hands a pty to the agent; the init's `install -o 1000`; dpkg
    "AUDIT_WRITE",  # Debian's sshd writes a login record to the audit log and drops a pty session without it
    "DAC_OVERRIDE",  # apt (root) moves what its _apt sandbox fetched out of _apt's own 0700 directories
    "FOWNER",  # package scripts chmod what they just chowned (`install -o USER -m MODE`)
    "NET_BIND_SERVICE",  # port 22, on an engine that does not open low ports to every user (before Docker 20.10)
)
# Dropped: NET_RAW (raw sockets, ARP/ICMP spoofing on the bridge), MKNOD (device nodes), KILL,
# FSETID, SETFCAP and SETPCAP (setuid and file capabilities mean nothing under no-new-privileges).


def create_container(engine: "Engine", spec: CreateSpec) -> str:
    docker = docker_py.sdk()

    def create(api: Any) -> str:
        host_config = api.create_host_config(
            port_bindings={22: ("127.0.0.1", spec.ssh_port)},
            binds={**({} if spec.workspace_must_exist else {spec.workspace: {"bind": layout.AGENT_WORKSPACE, "mode": "rw"}}),
                   spec.volume: {"bind": "/mnt/agent-data", "mode": "rw"}},
            # A Mount, unlike a bind, refuses a missing source instead of making an empty directory.
            mounts=[docker.types.Mount(layout.AGENT_WORKSPACE, spec.workspace, type="bind")] if spec.workspace_must_exist else None,
            mem_limit=spec.memory, memswap_limit=spec.memory, nano_cpus=int(spec.cpus * 1e9), init=True,
            # A setuid file in the agent's own volume or workspace (an archive's, or planted) must
            # not make the agent root.
            security_opt=["no-new-privileges:true"],
            # A fork bomb fills the container's pid budget, not the host's.
            cap_drop=["ALL"], cap_add=list(AGENT_CAPABILITIES), pids_limit=spec.pids_limit,
            restart_policy=dict(spec.restart_policy) if spec.restart_policy else None,
        )
        created = api.create_container(
            spec.image, name=spec.name, hostname=spec.hostname, labels=dict(spec.labels), ports=[22],
            host_config=host_config, working_dir=layout.AGENT_WORKSPACE, stop_timeout=spec.stop_timeout,
            environment={"CAI_HOST_WORKSPACE": spec.workspace, **spec.environment},
        )
        return created["Id"]

    return _with_engine_errors(engine, f"Failed to create container {spec.name}", create)


def start_container(engine: "Engine", name: str) -> None:
    docker = docker_py.sdk()
    try:
        engine.api(SLOW_TIMEOUT_S).start(name)
    except docker.errors.APIError as exc:
        raise CaiError(ExitCode.CONTAINER_START_FAILED, f"Failed to start container: {name}",
                       f"  {_api_message(exc)}", "Check container logs for details:", f"  docker logs {name}") from exc
    except Exception as exc:
        raise classify(exc) from exc


def remove_container(engine: "Engine", name: str) -> None:
    docker = docker_py.sdk()
    try:
        engine.api(SLOW_TIMEOUT_S).remove_container(name, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise CaiError(ExitCode.ERROR, f"Failed to remove container: {name}", f"  {_api_message(exc)}") from exc
    except Exception as exc:
        raise classify(exc) from exc


# A captured exec's output is the container's to choose (the probe reads what agents' processes
# and sockets look like): past this much it is an error, never the host's memory.
EXEC_OUTPUT_LIMIT = 4 << 20


class OutputTooLarge(CaiError):
    """The container sent more than cai reads from it; `message` says how much was allowed."""

    def __init__(self, what: str) -> None:
        super().__init__(ExitCode.ERROR, what)


def exec_captured(engine: "Engine", name: str, argv: list[str], timeout: float = 30.0, *,
                  user: str = ROOT, limit: int = EXEC_OUTPUT_LIMIT) -> tuple[str, int, str]:
    """A short captured `docker exec` (see container_scripts.py for what runs this way): (exec id,
    exit code, output). The id lets a caller leave its own exec out of the container's ExecIDs.
    Exit code 126 carries an engine refusal (e.g. the container is not running). More than
    `limit` bytes of output raise OutputTooLarge."""
    def run(api: Any) -> tuple[str, int, str]:
        exec_id = api.exec_create(name, argv, user=user, stdout=True, stderr=True)["Id"]
        try:
            out = _read_exec_output(api.exec_start(exec_id, socket=True), timeout, limit)
        except OutputTooLarge as exc:
            raise OutputTooLarge(f"{name} sent {exc.message}") from None
        return exec_id, api.exec_inspect(exec_id).get("ExitCode") or 0, out.decode(errors="replace")

    docker = docker_py.sdk()
    try:
        return run(engine.api(timeout))
    except docker.errors.APIError as exc:
        return "", 126, _api_message(exc)
    except CaiError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def _read_exec_output(sock: Any, timeout: float, limit: int) -> bytes:
    """An exec's multiplexed output, within `timeout` and `limit` bytes: docker-py waits for each
    frame in poll() with no timeout, so a stalled engine (a remote one, most often) would hold cai
    forever. A timer shuts the socket down; the read then ends, and the call is a timeout. Past
    `limit` the socket is closed at once (the exec's writes then fail) and nothing is kept."""
    import socket

    from docker.utils.socket import frames_iter

    raw = getattr(sock, "_sock", sock)
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    timer = threading.Timer(timeout, cut)
    timer.daemon = True
    timer.start()
    out = bytearray()
    try:
        for _, data in frames_iter(sock, tty=False):
            if len(out) + len(data) > limit:
                raise OutputTooLarge(f"more than {output.bytes_size(limit)} of output")
            out += data
    finally:
        timer.cancel()
        response = getattr(sock, "_response", None)
        if response is not None:
            response.close()
        sock.close()
    if expired.is_set():
        raise TimeoutError(f"no end of the exec's output within {timeout:g} s")
    return bytes(out)


def exec_as_root(engine: "Engine", name: str, argv: list[str], timeout: float = 30.0) -> tuple[int, str]:
    _, rc, out = exec_captured(engine, name, argv, timeout)
    return rc, out


def exec_as_agent(engine: "Engine", name: str, argv: list[str], timeout: float = 30.0) -> tuple[int, str]:
    _, rc, out = exec_captured(engine, name, argv, timeout, user="agent")
    return rc, out


def running_exec_ids(engine: "Engine", name: str, timeout: float = QUICK_TIMEOUT_S) -> list[str]:
    return [exec_id for exec_id, _ in running_execs(engine, name, timeout)]


def running_execs(engine: "Engine", name: str, timeout: float = QUICK_TIMEOUT_S) -> list[tuple[str, list[str]]]:
    """The container's exec sessions that are still running, with their argv (Moby drops finished
    ones from ExecIDs, but one may finish between the two reads)."""
    docker = docker_py.sdk()
    running = []
    for exec_id in engine.call("inspect_container", name, timeout=timeout).get("ExecIDs") or ():
        try:
            found = engine.call("exec_inspect", exec_id, timeout=timeout)
        except docker.errors.NotFound:
            continue
        if found.get("Running"):
            process = found.get("ProcessConfig") or {}
            running.append((exec_id, [process.get("entrypoint") or "", *(process.get("arguments") or ())]))
    return running


# --- lifecycle verbs (cai ps, logs, kill, restart, wait, top, pause, rename) ----------------------


def container_logs(engine: "Engine", name: str, *, stream: str, follow: bool, tail: int | None,
                   since: int | None, timestamps: bool) -> Iterator[bytes]:
    """One of the container's log streams ("stdout" or "stderr") as it arrives; with `follow`,
    until the container stops. No client timeout: a quiet container is not a dead engine."""
    def open_stream(api: Any) -> Iterator[bytes]:
        return api.logs(name, stdout=stream == "stdout", stderr=stream == "stderr", stream=True, follow=follow,
                        tail="all" if tail is None else tail, since=since, timestamps=timestamps)

    return _classified(_with_engine_errors(engine, f"Failed to read the log of {name}", open_stream, timeout=None))


def kill_container(engine: "Engine", name: str, signal_name: str) -> None:
    _with_engine_errors(engine, f"Failed to signal container {name}", lambda api: api.kill(name, signal=signal_name),
                        timeout=QUICK_TIMEOUT_S)


def wait_container(engine: "Engine", name: str) -> int:
    """Block until the container is not running (at once when it already is not), then its exit
    code. No client timeout: an agent may run for days."""
    found = _with_engine_errors(engine, f"Failed to wait for container {name}", lambda api: api.wait(name), timeout=None)
    failed = (found.get("Error") or {}).get("Message") if isinstance(found.get("Error"), dict) else found.get("Error")
    if failed:
        raise CaiError(ExitCode.ERROR, f"Failed to wait for container {name}: {failed}")
    return int(found.get("StatusCode", 1))


def container_top(engine: "Engine", name: str, ps_args: str | None) -> dict[str, Any]:
    return _with_engine_errors(engine, f"Failed to list the processes of {name}",
                               lambda api: api.top(name, ps_args=ps_args), timeout=QUICK_TIMEOUT_S)


def pause_container(engine: "Engine", name: str, *, paused: bool) -> None:
    verb = "pause" if paused else "unpause"
    _with_engine_errors(engine, f"Failed to {verb} container {name}", lambda api: getattr(api, verb)(name),
                        timeout=QUICK_TIMEOUT_S)


def rename_container(engine: "Engine", name: str, new_name: str) -> None:
    _with_engine_errors(engine, f"Failed to rename container {name}", lambda api: api.rename(name, new_name),
                        timeout=QUICK_TIMEOUT_S)


def stop_container(engine: "Engine", container: Container, grace_s: int | None = None) -> None:
    """`docker stop` with the container's own StopTimeout (100 s for ours), or `grace_s`."""
    grace = container.stop_timeout if grace_s is None else grace_s
    _with_engine_errors(engine, f"Failed to stop container: {container.name}",
                        lambda api: api.stop(container.name, timeout=grace_s),
                        timeout=SLOW_TIMEOUT_S + grace)


def container_stats(engine: "Engine", name: str, timeout: float) -> dict[str, Any]:
    """One non-streaming stats read: the daemon waits one sample (about 1 s) so CPU has a delta."""
    return engine.call("stats", name, stream=False, timeout=timeout)


# --- volumes and archives --------------------------------------------------------------------


def volume_exists(engine: "Engine", name: str) -> bool:
    docker = docker_py.sdk()
    try:
        engine.call("inspect_volume", name)
        return True
    except docker.errors.NotFound:
        return False


def remove_volume(engine: "Engine", name: str) -> None:
    _with_engine_errors(engine, f"Failed to remove volume {name}", lambda api: api.remove_volume(name, force=True))


def create_volume_helper(engine: "Engine", image: str, volume: str, mount: str, *, writable: bool,
                         labels: Mapping[str, str]) -> str:
    """A helper container whose only mount is the named volume: no host path, no network.
    Created, not started; start it only to run commands in it. Its main process sleeps a day, so
    a helper that cai could not remove (cai was killed) ends by itself."""
    def create(api: Any) -> str:
        host_config = api.create_host_config(
            binds={volume: {"bind": mount, "mode": "rw" if writable else "ro"}}, network_mode="none", auto_remove=False,
            # Root in the helper moves, removes and chowns what is in the volume; nothing more.
            cap_drop=["ALL"], cap_add=["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"],
            security_opt=["no-new-privileges:true"],
        )
        return api.create_container(image, entrypoint=["sleep"], command=["86400"], labels=dict(labels),
                                    host_config=host_config, network_disabled=True)["Id"]

    return _with_engine_errors(engine, "Failed to create helper container", create)


MISSING_BIND_SOURCE = "bind source path does not exist"  # the engine's refusal of a Mount
GO_MODE_DIR, GO_MODE_SYMLINK = 1 << 31, 1 << 27  # os.ModeDir and os.ModeSymlink in the archive API's stat


def _path_stat(api: Any, container: str, path: str) -> dict[str, Any] | None:
    """The archive API's stat of `path` in the container (the link itself when it is one; stopped
    containers too), or None when it does not exist."""
    stat = docker_py.archive_stat(api, container, path, QUICK_TIMEOUT_S)
    if stat is None:
        return None
    return {"mode": int(stat.get("mode") or 0), "size": int(stat.get("size") or 0),
            "link_target": str(stat.get("linkTarget") or "")}


def path_stat(engine: "Engine", container: str, path: str) -> dict[str, Any] | None:
    return _with_engine_errors(engine, f"Failed to look at {container}:{output.shown(path)}",
                               lambda api: _path_stat(api, container, path), timeout=QUICK_TIMEOUT_S)


def engine_host_directory(engine: "Engine", image: str, path: str, labels: Mapping[str, str]) -> bool:
    """Whether `path` is a directory on the engine's host, seen as a container's bind sees it: a
    created (never started) container with the Mount, which the engine refuses for a missing
    source, then the stat of its mount point through the archive API; the container is removed."""
    docker = docker_py.sdk()
    probe_dir = "/cai-bind-check"

    def probe(api: Any) -> bool:
        host_config = api.create_host_config(
            mounts=[docker.types.Mount(probe_dir, path, type="bind", read_only=True)], network_mode="none")
        try:
            created = api.create_container(image, entrypoint=["true"], labels=dict(labels), host_config=host_config,
                                           network_disabled=True)["Id"]
        except docker.errors.APIError as exc:
            if MISSING_BIND_SOURCE in _api_message(exc):
                return False
            raise
        try:
            stat = _path_stat(api, created, probe_dir)
            return stat is not None and bool(stat["mode"] & GO_MODE_DIR)
        finally:
            api.remove_container(created, force=True)

    return _with_engine_errors(engine, f"Failed to check {output.shown(path)} on the engine host", probe)


def get_archive(engine: "Engine", container: str, path: str) -> Iterator[bytes]:
    """The uncompressed tar of `path` in the container (stopped ones too), as a byte stream. A
    connection that breaks while it streams is classified like any engine failure."""
    def fetch(api: Any) -> Iterator[bytes]:
        stream, _ = api.get_archive(container, path, chunk_size=1 << 16)
        return stream

    stream = _with_engine_errors(engine, f"Failed to read {path} from {container}", fetch, timeout=SLOW_TIMEOUT_S)
    return _classified(stream)


def _classified(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except CaiError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def missing(exc: CaiError) -> bool:
    """Whether a classified engine error was the engine's "no such" answer (a path, a container)."""
    return isinstance(exc.__cause__, docker_py.sdk().errors.NotFound)


# What the engine's tar may add around a file (its header, a PAX header with long names or extended
# attributes) before a file of `limit` bytes has been read whole.
_TAR_SLACK = 1 << 16


class _BoundedChunks:
    """A read()-able view of an archive stream that refuses to take in more than `budget` bytes:
    the container's root decides what is at the path, and a tarfile stream read asks for no more
    than the next header or member needs."""

    def __init__(self, chunks: Iterator[bytes], budget: int) -> None:
        self.chunks, self.budget, self.left, self.pending = chunks, budget, budget, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.pending) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.left -= len(chunk)
            if self.left < 0:
                raise OutputTooLarge(f"more than the {output.bytes_size(self.budget)} cai reads for it")
            self.pending += chunk
        taken, self.pending = (self.pending, b"") if size < 0 else (self.pending[:size], self.pending[size:])
        return taken


def read_regular_file(engine: "Engine", container: str, path: str, limit: int = 1 << 16) -> bytes | None:
    """A small file's bytes, read by the engine inside the container's own root; None when it is
    missing, not a regular file (a final symlink is not followed) or over `limit` bytes. The stream
    is read only as far as that takes; headers that run past the bound are an error."""
    import tarfile

    try:
        stream = get_archive(engine, container, path)
    except CaiError as exc:
        if missing(exc):
            return None
        raise
    try:
        with tarfile.open(fileobj=_BoundedChunks(stream, limit + _TAR_SLACK), mode="r|") as tar:
            member = tar.next()
            if member is None or not member.isreg() or member.size > limit:
                return None
            handle = tar.extractfile(member)
            return handle.read() if handle is not None else None
    except OutputTooLarge as exc:
        raise CaiError(ExitCode.ERROR, f"Refusing to read {container}:{output.shown(path)}: the engine sent {exc.message}") from None
    except tarfile.TarError as exc:
        raise CaiError(ExitCode.ERROR, f"Unreadable archive of {container}:{output.shown(path)}: {exc}") from None
    finally:
        stream.close()


def put_archive(engine: "Engine", container: str, path: str, data: Any) -> None:
    """Extract an uncompressed tar (bytes, a file object or an iterator of chunks, sent as it is
    produced) at `path`; owners, modes and times come from the tar."""
    def put(api: Any) -> None:
        if not api.put_archive(container, path, data):
            raise CaiError(ExitCode.ERROR, f"Failed to write into {container}:{path}")

    _with_engine_errors(engine, f"Failed to write into {container}:{path}", put)


def mount_holding(engine: "Engine", container: str, path: str) -> dict[str, Any] | None:
    """The mount (inspect's Mounts entry) whose destination holds `path`, the deepest one; None
    when `path` is in the container's own root."""
    best = None
    for mount in engine.call("inspect_container", container).get("Mounts") or ():
        target = (mount.get("Destination") or "").rstrip("/") if isinstance(mount, dict) else ""
        if target and (path == target or path.startswith(target + "/")):
            if best is None or len(target) > len(best["Destination"].rstrip("/")):
                best = mount
    return best


def others_mounting(engine: "Engine", mount: Mapping[str, Any], except_id: str) -> list[str]:
    """Names of the other containers, in any state, that mount the same volume (or bind the
    same host path) as `mount`, an inspect Mounts entry."""
    key = "Name" if mount.get("Type") == "volume" else "Source"
    names = []
    for item in engine.call("containers", all=True):
        if item.get("Id") == except_id:
            continue
        if any(isinstance(m, dict) and m.get("Type") == mount.get("Type") and m.get(key) == mount.get(key)
               for m in item.get("Mounts") or ()):
            names.append((item.get("Names") or ["/?"])[0].lstrip("/"))
    return sorted(names)


def copy_through_helper(engine: "Engine", image: str, mount: Mapping[str, Any], data: Any, target: str,
                        argv: list[str], *, as_root: bool, labels: Mapping[str, str]) -> None:
    """Extract `data` (a tar) at a fresh helper's own root, then run `argv` there to copy it to
    `target`. The helper has only `mount` (at its destination), no
    network and no capabilities beyond the few that `-a` needs as root; it is removed afterwards."""
    docker = docker_py.sdk()
    kind = mount.get("Type")
    source = mount.get("Name") if kind == "volume" else mount.get("Source")
    if kind not in ("volume", "bind") or not isinstance(source, str):
        raise CaiError(ExitCode.ERROR, f"cai cannot copy into a {kind} mount of a stopped container",
                       "Start the container (cai run) and copy again")

    def run(api: Any) -> None:
        host_config = api.create_host_config(
            mounts=[docker.types.Mount(mount["Destination"], source, type=kind)], network_mode="none",
            cap_drop=["ALL"], cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"] if as_root else None,
            security_opt=["no-new-privileges:true"], pids_limit=64)
        helper = api.create_container(image, entrypoint=argv[:1], command=argv[1:], user="0:0" if as_root else "1000:1000",
                                      labels=dict(labels), host_config=host_config, network_disabled=True,
                                      working_dir="/")["Id"]
        try:
            if not api.put_archive(helper, "/", data):
                raise CaiError(ExitCode.ERROR, "Failed to stage the copy in its helper")
            api.start(helper)
            code = api.wait(helper, timeout=SLOW_TIMEOUT_S)["StatusCode"]
            if code != 0:
                said = api.logs(helper, stdout=True, stderr=True, tail=5).decode(errors="replace")
                raise CaiError(ExitCode.ERROR, f"Copy failed into {output.shown(target)} (exit {code})",
                               *[f"  {output.shown(line[:300])}" for line in said.splitlines() if line.strip()])
        finally:
            api.remove_container(helper, force=True)

    _with_engine_errors(engine, f"Failed to copy into {output.shown(target)}", run)


def start_helper(engine: "Engine", container: str) -> None:
    _with_engine_errors(engine, "Failed to start helper container", lambda api: api.start(container))


def exec_detached(engine: "Engine", container: str, argv: list[str]) -> str:
    """Start a root command that goes on whatever happens to this process or its connection."""
    def start(api: Any) -> str:
        exec_id = api.exec_create(container, argv, user=ROOT, stdout=False, stderr=False, environment={})["Id"]
        api.exec_start(exec_id, detach=True)
        return exec_id

    return _with_engine_errors(engine, f"Failed to run a command in {container}", start)


def exec_state(engine: "Engine", exec_id: str) -> tuple[bool, int | None]:
    """(running, exit code) of an exec started by `exec_detached`."""
    data = engine.call("exec_inspect", exec_id)
    return bool(data.get("Running")), data.get("ExitCode")


def engine_arch(engine: "Engine") -> str:
    return str(engine.call("version").get("Arch", ""))


def images_labelled(engine: "Engine", label_filter: str) -> list[dict[str, Any]]:
    return engine.call("images", filters={"label": label_filter})


def import_image(engine: "Engine", rootfs_tar: bytes, repository: str, tag: str, labels: Mapping[str, str],
                 command: list[str]) -> None:
    """An image from a root filesystem tar, through the API (no registry, no build)."""
    import json

    changes = [f"LABEL {json.dumps(key)}={json.dumps(value)}" for key, value in labels.items()]
    changes.append(f"CMD {json.dumps(command)}")
    _with_engine_errors(engine, f"Failed to create the helper image {repository}:{tag}",
                        lambda api: api.import_image_from_data(rootfs_tar, repository=repository, tag=tag, changes=changes))
