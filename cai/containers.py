"""The workspace container: find it, create it, start it, make SSH reach it, and run a session.

Shared by `run`, `exec` and `shell`. Docker goes through `engine`, OpenSSH through `ssh`.
"""

from __future__ import annotations

import dataclasses
import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping, Sequence

    from cai.resolution import Target

from cai import config, engine, labels, output, run_options, ssh, userfiles
from cai import container_scripts as scripts
from cai.errors import CaiError, ExitCode

DEFAULT_STOP_TIMEOUT = 100
START_POLLS = 30


# --- ports -----------------------------------------------------------------------------------


def host_listening_ports(proc_net: Sequence[str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> set[int]:
    """TCP ports in LISTEN state on this host, read from /proc (no `ss` needed)."""
    ports: set[int] = set()
    for path in proc_net:
        try:
            with open(path) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def allocate_port(eng: engine.Engine) -> int:
    """Lowest port in range that no host listener and no managed container's label holds.
    Call with the port lock held, until the container (and its label) exists."""
    used = host_listening_ports()
    for row in engine.list_containers(eng, [labels.MANAGED_FILTER]):
        port = labels.ssh_port(row.get("Labels"))
        if port is not None:
            used.add(port)
    start, end = ssh.PORT_RANGE
    for port in range(start, end + 1):
        if port not in used:
            return port
    raise CaiError(ExitCode.ERROR, f"All {end - start + 1} SSH ports in range {start}-{end} are in use",
                   "To free up ports, stop or remove unused containers: cai stop --all")


# --- lifecycle -------------------------------------------------------------------------------


def create(target: Target, *, image: str, memory: str, cpus: float, remote_path: str | None = None,
           options: "run_options.RunOptions | None" = None) -> engine.Container:
    eng = target.engine
    pids_limit = target.layers.pids_limit()
    require_image(eng, image)
    engine.ensure_volume(eng, target.volume)
    output.info(f"Creating container {target.name} [context: {eng.context}]")
    # A remote engine's host does not have this path (a bind mount would make an empty directory
    # there without a word): the workspace goes into a volume of its own, as a copy, unless
    # --remote-path names a checkout the engine's host has.
    workspace_volume = None
    if engine.is_remote(eng) and remote_path is None:
        workspace_volume = workspace_volume_name(target.name)
        users = [row["Names"][0].lstrip("/") for row in engine.list_containers(eng, [], volume=[workspace_volume])]
        if users:  # a renamed container keeps its copy: a new one must not upload over it
            raise CaiError(ExitCode.ERROR, f"Volume {workspace_volume} holds the workspace of container {users[0]}",
                           f"[HINT] Choose another name (--container), or remove {users[0]} first")
        engine.ensure_volume(eng, workspace_volume)
    with userfiles.file_lock(userfiles.config_dir() / ".ssh-port.lock"):
        port = allocate_port(eng)
        options = options or run_options.RunOptions()
        container_labels = {**options.labels, **run_options.env_label(options.environment), labels.MANAGED: "true",
                            labels.WORKSPACE: str(target.workspace), labels.SSH_PORT: str(port),
                            labels.DATA_VOLUME: target.volume}
        if workspace_volume is not None:
            container_labels[labels.WORKSPACE_VOLUME] = workspace_volume
        spec = engine.CreateSpec(
            name=target.name, image=image, hostname=labels.sanitize_hostname(target.name), labels=container_labels,
            ssh_port=port, workspace=workspace_volume or remote_path or str(target.workspace), volume=target.volume,
            memory=memory, cpus=cpus, stop_timeout=DEFAULT_STOP_TIMEOUT, workspace_must_exist=remote_path is not None,
            restart_policy=options.restart_policy, pids_limit=pids_limit,
        )
        profile = run_options.profile_archive(options.environment) if options.environment else None
        try:
            engine.create_container(eng, spec)
        except CaiError as exc:
            if remote_path is not None and engine.MISSING_BIND_SOURCE in exc.message:  # gone since the check
                raise _not_an_engine_host_directory(eng, remote_path) from exc
            raise
    if profile is not None:  # the agent's logins; root's `docker exec` (cai exec -u root) does not get it
        engine.put_archive(eng, target.name, "/etc", profile)
    if workspace_volume is not None:
        from cai import volumes

        volumes.upload_workspace(eng, target.name, target.workspace)
    return ensure_running(eng, target.name)


def paused_error(name: str, code: int = ExitCode.ERROR) -> CaiError:
    return CaiError(code, f"Container {name} is paused", f"Thaw it first: cai unpause --container {name}")


def workspace_volume_name(name: str) -> str:
    """The volume that holds a remote container's copy of the workspace."""
    return config.validate_volume_name(f"{name}-workspace")


def require_image(eng: engine.Engine, image: str) -> None:
    if not eng.image_exists(image):
        raise CaiError(ExitCode.ERROR, f"Image not found: {image}", "Build it with: cai image build")


def remote_path_choice(eng: engine.Engine, remote_path: str | None, existing: engine.Container | None) -> str | None:
    """--remote-path, cleaned as Docker stores a bind's source: absolute, on a remote engine, not
    the host's root, and the one an existing container binds."""
    if remote_path is None:
        return None
    import posixpath

    if not remote_path.startswith("/") or "\0" in remote_path or not remote_path.isprintable():
        raise CaiError(ExitCode.ERROR, f"--remote-path must be an absolute path on the engine host: {output.shown(remote_path)}")
    cleaned = "/" + posixpath.normpath(remote_path).lstrip("/")
    if cleaned == "/":
        raise CaiError(ExitCode.ERROR, "--remote-path / would give the agent the engine host's whole filesystem",
                       "[HINT] Name the checkout's own directory")
    if not engine.is_remote(eng):
        raise CaiError(ExitCode.ERROR, f"--remote-path needs a remote engine; context {eng.context} is on this host",
                       "[HINT] Give the local directory as the workspace instead")
    if existing is not None and dict(existing.workspace_mount) != {"type": "bind", "source": cleaned}:
        shown = describe_workspace(existing.workspace_mount, labels.label(existing.labels, labels.WORKSPACE), remote=True)
        raise CaiError(ExitCode.ERROR, f"Container {existing.name} has another workspace: {shown or 'unknown'}",
                       "[HINT] Recreate it with --fresh to bind the remote path")
    return cleaned


def require_engine_host_directory(eng: engine.Engine, image: str, path: str) -> None:
    """Before anything is removed or made: --fresh must not lose a container to a typo."""
    require_image(eng, image)
    if not engine.engine_host_directory(eng, image, path, {labels.HELPER: "true", labels.HELPER_ROLE: "bind-check"}):
        raise _not_an_engine_host_directory(eng, path)


def _not_an_engine_host_directory(eng: engine.Engine, path: str) -> CaiError:
    return CaiError(ExitCode.ERROR, f"Not a directory on the engine host of context {eng.context}: {output.shown(path)}",
                    "[HINT] --remote-path names a directory that already exists there")


def workspace_report(container_labels: Mapping[str, str], mount: Mapping[str, str]) -> dict[str, Any]:
    """The local workspace the container is for, and what its /home/agent/workspace really is: a
    bind of a directory of the engine's host, or a volume that holds a copy (a remote engine's)."""
    return {"path": labels.label(container_labels, labels.WORKSPACE) or None, "mount": mount.get("type"),
            "source": mount.get("source"), "copy": mount.get("type") == "volume" if mount else None}


def describe_workspace(mount: Mapping[str, str], path: str | None, *, remote: bool) -> str | None:
    """What /home/agent/workspace is: `copy of PATH in volume V`, `PATH (on the engine host)` or
    `PATH`; None when the mount is unknown."""
    if mount.get("type") == "volume":
        return f"copy of {output.shown(path)} in volume {mount['source']}" if path else f"copy in volume {mount['source']}"
    if mount.get("type") == "bind":
        return output.shown(mount["source"]) + (" (on the engine host)" if remote else "")
    return None


def remove(eng: engine.Engine, container: engine.Container) -> None:
    """`docker rm -f`, then the container's ssh config and pinned host keys."""
    engine.remove_container(eng, container.name)
    ssh.forget_container(container.name, ssh.host_key_alias(container.context, container.id))


def ensure_running(eng: engine.Engine, name: str, known: engine.Container | None = None) -> engine.Container:
    """`known` is a record just read, which saves the first inspect."""
    found = known or eng.inspect_container(name)
    if found is None:
        raise CaiError(ExitCode.CONTAINER_NOT_FOUND, f"Container not found: {name}")
    if found.running:
        return found
    if found.status == "paused":  # the engine would say only "cannot start a paused container"
        raise paused_error(name, ExitCode.CONTAINER_START_FAILED)
    output.info(f"Starting container {name}...")
    engine.start_container(eng, name)
    for _ in range(START_POLLS):
        found = eng.inspect_container(name)
        if found is not None and found.running:
            return found
        time.sleep(0.5)
    raise CaiError(ExitCode.CONTAINER_START_FAILED, "Container failed to start within 30 attempts",
                   "Check container logs for details:", f"  docker logs {name}")


def endpoint(container: engine.Container) -> ssh.Endpoint:
    host = engine.context_endpoint(container.context)
    return ssh.Endpoint(container.name, ssh_port(container), ssh.host_key_alias(container.context, container.id),
                        ssh.jump_for(host), engine.sshd_bridge_argv(container.context, container.id, host))


HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")


def engine_host_keys(eng: engine.Engine, name: str) -> list[str]:
    """The container's public host keys ("TYPE BASE64"), read through the engine, not from the
    network: whatever answers on the port has to prove it holds one of these."""
    from concurrent.futures import ThreadPoolExecutor

    def read(kind: str) -> bytes | None:
        return engine.read_regular_file(eng, name, f"/etc/ssh/ssh_host_{kind}_key.pub")

    keys = []
    with ThreadPoolExecutor(len(HOST_KEY_TYPES)) as pool:  # side by side: a new container's start waits on them
        for data in pool.map(read, HOST_KEY_TYPES):
            fields = data.decode("ascii", "replace").split() if data else []
            if len(fields) >= 2 and fields[0].isascii() and fields[1].isascii():
                keys.append(f"{fields[0]} {fields[1]}")
    return keys


def ssh_port(container: engine.Container) -> int:
    port = labels.ssh_port(container.labels)
    if port is None:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, "Container has no SSH port configured",
                       "This container may have been created before SSH support was added.",
                       "Recreate the container with: cai run --fresh /path/to/workspace")
    return port


def inject_key(eng: engine.Engine, name: str, public_key: str) -> None:
    """Append our key once, as the agent: its home is its own, so root never writes there."""
    rc, out = engine.exec_as_agent(eng, name, scripts.inject_key(public_key, public_key.split()[1]))
    if rc != 0:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, "Failed to inject SSH key into container",
                       *(f"  {line}" for line in out.strip().splitlines()[-3:]))


def setup_ssh(eng: engine.Engine, container: engine.Container, *, ready_timeout: float = ssh.READY_TIMEOUT_S) -> ssh.Endpoint:
    """Key, readiness, host keys pinned from the engine, and the client config."""
    target = endpoint(container)
    public_key = ssh.ensure_key()
    keys: list[str] = []

    def keys_readable() -> bool:
        # All of them, or the same ones twice: init writes them one by one, and something other
        # than sshd may answer on the port before init is done.
        found = engine_host_keys(eng, container.name)
        settled = bool(found) and (len(found) == len(HOST_KEY_TYPES) or found == keys)
        keys[:] = found
        return settled

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        # The key goes in (an exec as the agent) while a new container's sshd makes its host keys.
        injected = pool.submit(inject_key, eng, container.name, public_key)
        ssh.wait_for_sshd(target.port, lambda: bool((c := eng.inspect_container(container.name)) and c.running),
                          ready_timeout, also=keys_readable, proxy=ssh.proxy_words(target, target.port))
        pin_from_engine(eng, target, keys)
        injected.result()
    ssh.write_host_config(target)
    output.ok(f"SSH access configured for container {container.name}: ssh {container.name}")
    return target


def pin_from_engine(eng: engine.Engine, target: ssh.Endpoint, keys: list[str] | None = None) -> list[str]:
    """Pin exactly the keys the engine shows (sshd greets only after init made them all); `keys`
    when they were just read."""
    keys = keys or engine_host_keys(eng, target.name)
    if not keys:
        raise CaiError(ExitCode.SSH_SETUP_FAILED, f"Container {target.name} has no readable SSH host keys",
                       "  Expected /etc/ssh/ssh_host_*_key.pub, made by the image's init at first start")
    ssh.pin_host_keys(target.alias, keys)
    return keys


def ssh_ready(container: engine.Container) -> bool:
    """The fast path: this very container's client config exists, so skip setup and let a
    failure trigger it."""
    return ssh.host_config_alias(container.name) == ssh.host_key_alias(container.context, container.id)


def _docker_hint(container: engine.Container) -> str:
    """The docker command that looks where cai looked."""
    return "docker" if container.context == engine.DEFAULT_CONTEXT else f"docker --context {container.context}"


def connect(eng: engine.Engine, container: engine.Container, remote: str, *, tty: str | None, shared: bool = False) -> int:
    """Run `remote` over SSH: remote codes pass through; a command that was sent is never re-run.
    `shared` sessions go through the control master (see ssh.multiplex_options)."""
    target = endpoint(container)
    if not ssh_ready(container):
        output.info("Setting up SSH configuration...")
        target = setup_ssh(eng, container)
    recovered = reinjected = False
    attempt = 0
    delay = 0.5
    while True:
        outcome = ssh.run_session(target, remote, tty=tty, shared=shared)
        if outcome.signal is not None:
            return 128 + outcome.signal
        if outcome.rc != 255 or outcome.sent:
            if recovered:
                output.info("Auto-recovered from stale host key")
            return outcome.rc
        kind = ssh.failure_kind(outcome)
        if kind == "host_key":
            pinned = ssh.pinned_keys(target.alias)
            if recovered or pin_from_engine(eng, target) == pinned:
                # The engine's keys are the pinned ones: whatever answers on the port is not this container.
                raise CaiError(ExitCode.HOST_KEY_MISMATCH,
                               f"SSH host key mismatch: the server on port {target.port} is not container {container.name}",
                               "  Its key is none of the host keys the engine shows for the container.",
                               "Check what listens on the port, or recreate the container: cai run --fresh /path/to/workspace")
            output.warn("SSH host keys changed, pinned them again from the engine...")
            recovered = True
            continue
        if kind == "fatal" and not reinjected and "permission denied" in outcome.log.lower():
            inject_key(eng, container.name, ssh.ensure_key())
            reinjected = True
            continue
        if kind == "fatal":
            raise CaiError(ExitCode.SSH_CONNECT_FAILED, "SSH connection failed: non-transient error", *ssh.error_lines(outcome.log))
        attempt += 1
        if attempt >= ssh.CONNECT_ATTEMPTS:
            raise CaiError(ExitCode.SSH_CONNECT_FAILED, f"SSH connection failed after {ssh.CONNECT_ATTEMPTS} retries",
                           *ssh.error_lines(outcome.log), "", "Troubleshooting:",
                           f"  1. Check container is running: {_docker_hint(container)} ps | grep {container.name}",
                           f"  2. Check port mapping: {_docker_hint(container)} port {container.name} 22")
        output.warn(f"SSH connection failed, retrying ({attempt}/{ssh.CONNECT_ATTEMPTS})...")
        time.sleep(delay)
        delay = min(delay * 2, 4.0)
        try:
            setup_ssh(eng, container, ready_timeout=3.0)
        except CaiError:
            pass  # the next attempt reports what is wrong


def prepare(target: Target, *, image: str, memory: str, cpus: float, fresh: bool,
            remote_path: str | None = None, options: "run_options.RunOptions | None" = None) -> engine.Container:
    """Create, recreate or start the container so that it runs and SSH reaches it."""
    ssh.preflight()
    eng = target.engine
    if engine.needs_bridge(eng.endpoint()):
        engine.require_docker_cli()  # the bridge to sshd runs it: say so before anything is made
    remote_path = remote_path_choice(eng, remote_path, None if fresh else target.container)
    if remote_path is not None and (fresh or target.container is None):
        require_engine_host_directory(eng, image, remote_path)
    if options is not None and options.given() and target.container is not None and not fresh:
        output.warn(f"--label, --env and --restart are for a new container; {target.name} exists "
                    "(recreate it with --fresh to apply them)")
    if fresh and target.container is not None:
        output.info("Recreating container...")
        remove(eng, target.container)
        target = dataclasses.replace(target, container=None)
    if target.container is None:
        output.info("Container not found, creating...")
        container = create(target, image=image, memory=memory, cpus=cpus, remote_path=remote_path, options=options)
        setup_ssh(eng, container)
    else:
        container = ensure_running(eng, target.name, target.container)
        if not target.container.running or not ssh_ready(container):
            setup_ssh(eng, container)
    config.save_workspace_state(str(target.workspace), container_name=target.name, data_volume=target.volume)
    return container
