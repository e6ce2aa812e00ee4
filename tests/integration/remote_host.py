"""A second Docker host for the tests, built on this machine: an engine reached as `ssh://root@ADDR`.

One long-lived `unshare --net --mount --pid --uts --fork` child is the remote host's init (this
file, run with `--init`). Its namespaces hold:

* the network: `lo`, and `eth0` at 10.213.9.2/30, the far end of a veth whose near end is
  `cai-rh0` at 10.213.9.1/30 on this host (slot 0; a concurrent session takes slot 1, 2, ...);
* sshd on 10.213.9.2:22, with its own config, host key, authorized_keys and pidfile under
  /run/cai-remote-host/sshd (root may log in with the suite's key only);
* a dockerd of its own, also on tcp://10.213.9.2:2376 with TLS (client certificates from a CA
  made for the run, under /run/cai-remote-host/tls): data root /var/lib/cai-remote-host (a 4 GB tmpfs inside the namespace
  unless `data_tmpfs=None`: loading the image skips the fsyncs, teardown deletes nothing), exec
  root and socket under /run/cai-remote-host (the socket, /run/cai-remote-host/docker.sock, is
  reachable from this host too), its own docker0 (172.31.250.1/24) and containerd, no iptables;
* a mount namespace in which that socket is bound over /run/docker.sock (so that
  `ssh root@ADDR docker system dial-stdio` reaches it), /etc/docker is its own (its own key.json:
  another daemon ID), and tmpfs hides /tmp, /var/tmp and pytest's basetemp (a bind mount of a
  local path on the remote engine finds an empty directory, never this host's files), /root
  (the remote root's home is empty: none of this host's dotfiles, docker or ssh config) and the
  host engine's /run/docker and /run/containerd.

The remote host has no route beyond 10.213.9.1 (no NAT): its engine pulls nothing. Everything
else it sees of this machine's files (/usr, /etc, /work, ...) is this machine's, read-write.

`unshare --net` and not `ip netns exec`: the latter remounts /sys, which hides the cgroups from
dockerd. The pid namespace makes teardown total: SIGKILL to the init kills every process of the
host (sshd, dockerd, containerd, shims, containers), the network namespace and its veth go with
them, and so do the mounts. The init also kills everything when its stdin (a pipe from the test
process) closes, so a test run that dies leaves nothing running; `cleanup_leftovers()` removes the
rest (veth, directories, cgroups) and any stray process an earlier run left.

OpenSSH finds `~` through the passwd entry (root: /root), not $HOME, so `ssh` run with a test's
HOME would still read /root/.ssh/config. `add_context(home)` writes `home/.ssh/config`, and
`bin_dir` holds an `ssh` that passes `-F $HOME/.ssh/config` (a later `-F` still wins): put it first
on PATH (`env(home)` does) for the docker CLI and for cai, which run plain `ssh`.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CONTEXT = "cai-test-remote"
TLS_CONTEXT = "cai-test-tls"
TLS_PORT = 2376
USER = "root"
SLOTS = 4  # concurrent sessions on one machine; slot 0 is cai-rh0 / 10.213.9.2 / /run/cai-remote-host
BRIDGE_IP = "172.31.250.1/24"  # the remote engine's docker0, inside its own network namespace
HOST_SOCKET = "/var/run/docker.sock"
RUN_LABEL = "cai.test.run"
_STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_START_TIMEOUT_S = 60


class Slot:
    """The names of one remote host; slot 0 has the documented ones."""

    def __init__(self, index: int) -> None:
        if not 0 <= index < SLOTS:
            raise ValueError(f"slot {index} is not in 0..{SLOTS - 1}")
        suffix = "" if index == 0 else f"-{index}"
        self.index = index
        self.name = f"cai-remote-host{suffix}"  # also its hostname and its cgroup parent
        self.state_dir = Path(f"/run/{self.name}")
        self.data_root = Path(f"/var/lib/{self.name}")
        self.lock_path = Path(f"/run/{self.name}.lock")  # outside state_dir: never removed
        self.veth = f"cai-rh{index}"
        self.host_address = f"10.213.9.{4 * index + 1}"
        self.address = f"10.213.9.{4 * index + 2}"
        self.socket = str(self.state_dir / "docker.sock")


# --- processes -------------------------------------------------------------------------------


def _starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: with the pid, it names one process (pids are reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _alive(pid: int, starttime: int | None) -> bool:
    now = _starttime(pid)
    return now is not None and (starttime is None or now == starttime)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _pidns(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _host_pid(ns_pid: int, pidns: int) -> int | None:
    """The pid, as this host sees it, of the process that is `ns_pid` in the pid namespace `pidns`."""
    for pid in _pids():
        if _pidns(pid) != pidns:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == str(ns_pid):
                return pid
    return None


def processes_in(pidns: int) -> list[tuple[int, str]]:
    """(host pid, comm) of every process in the pid namespace `pidns`."""
    return [(pid, _comm(pid)) for pid in _pids() if _pidns(pid) == pidns]


def _kill_and_wait(pids: list[int], timeout: float = 15) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_starttime(pid) is not None and not _zombie(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survive SIGKILL: {pids}")
        time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _run(*argv: str, check: bool = True, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")  # /sys of this (the host's) network namespace


# --- leftovers ---------------------------------------------------------------------------------


def _clean_slot(slot: Slot) -> None:
    """Remove whatever a remote host of `slot` left: its processes, veth, mounts, cgroups, dirs.
    The caller holds the slot's lock."""
    marker = str(slot.state_dir) + "/"
    recorded: list[int] = []
    try:
        record = json.loads((slot.state_dir / "pids.json").read_text())
        for pid, starttime in record.get("processes", {}).values():
            if _alive(pid, starttime):
                recorded.append(pid)
    except (OSError, ValueError, TypeError):
        pass
    stray = [pid for pid in _pids() if pid != os.getpid() and any(marker in arg or arg == str(slot.state_dir)
                                                                    for arg in _cmdline(pid))]
    _kill_and_wait(sorted(set(recorded + stray)))
    if _link_exists(slot.veth):
        _run("ip", "link", "del", slot.veth, check=False)
    deadline = time.monotonic() + 10
    while _link_exists(slot.veth) and time.monotonic() < deadline:  # a dying netns takes its veth a bit later
        time.sleep(0.02)
    if _link_exists(slot.veth):
        raise RuntimeError(f"veth {slot.veth} is still there")
    for mountpoint in reversed(_mountpoints()):  # none in this namespace, unless someone made them here
        if mountpoint.startswith((str(slot.data_root) + "/", marker)) or mountpoint in (str(slot.data_root),):
            _run("umount", "-l", mountpoint, check=False)
    _remove_cgroups(slot.name)
    for directory in (slot.state_dir, slot.data_root):
        shutil.rmtree(directory, ignore_errors=True)
        if directory.exists():
            _run("rm", "-rf", "--one-file-system", str(directory), check=False)
        if directory.exists():
            raise RuntimeError(f"cannot remove {directory}")


def _mountpoints() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(_unescape(line.split()[4]))
    return points


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def _remove_cgroups(parent: str) -> None:
    roots = [Path("/sys/fs/cgroup")] + [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()]
    for root in roots:
        top = root / parent
        if not top.is_dir():
            continue
        deadline = time.monotonic() + 5
        while top.exists():
            for directory, _subdirs, _files in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
            if not top.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.05)


def _try_lock(slot: Slot):
    """The slot's lock (a flock, so a dead session's is free), or None when another session has it.
    The file is removed on release: a lock taken on a file that was replaced meanwhile is retried."""
    while True:
        handle = open(slot.lock_path, "a")  # noqa: SIM115 - held for the host's life; non-inheritable
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        try:
            if os.stat(slot.lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def _unlock(slot: Slot, handle) -> None:
    try:
        os.unlink(slot.lock_path)
    except FileNotFoundError:
        pass
    handle.close()


def _has_leftovers(slot: Slot) -> bool:
    return slot.state_dir.exists() or slot.data_root.exists() or _link_exists(slot.veth) or any(
        str(slot.state_dir) + "/" in arg for pid in _pids() for arg in _cmdline(pid))


def cleanup_leftovers() -> list[int]:
    """Clean every slot no live session holds (an interrupted run's veth, pidfile, processes,
    mounts, cgroups, data root). Returns the slots that are busy: another session's, left alone."""
    busy = []
    for index in range(SLOTS):
        slot = Slot(index)
        if not slot.lock_path.exists() and not _has_leftovers(slot):
            continue
        lock = _try_lock(slot)
        if lock is None:
            busy.append(index)
            continue
        try:
            _clean_slot(slot)
        finally:
            _unlock(slot, lock)
    return busy


# --- this host's side ------------------------------------------------------------------------

_SSH_WRAPPER = """#!/bin/sh
# ssh that reads $HOME/.ssh/config: OpenSSH itself finds ~ through the passwd entry, not $HOME.
# A later -F on the command line still wins (ssh keeps the last one). With CAI_TEST_SSH_LOG set,
# each run leaves its arguments there (a test can count engine connections).
if [ -n "${{CAI_TEST_SSH_LOG:-}}" ]; then
    printf '%s\\n' "$*" >> "$CAI_TEST_SSH_LOG"
fi
if [ -n "${{HOME:-}}" ] && [ -f "$HOME/.ssh/config" ]; then
    exec {ssh} -F "$HOME/.ssh/config" "$@"
fi
exec {ssh} "$@"
"""

_BEGIN = "# >>> cai-test-remote (tests/integration/remote_host.py)"
_END = "# <<< cai-test-remote"


class RemoteHost:
    """The remote host. After `start()`:

    address        '10.213.9.2' (slot 0), the remote host's own address; `host_address` is ours
    user, destination, docker_host   'root', 'root@10.213.9.2', 'ssh://root@10.213.9.2'
    context        'cai-test-remote', the docker context `add_context(home)` creates
    socket         '/run/cai-remote-host/docker.sock' (reachable from this host too); `unix_host`
    client         a docker-py client to the remote engine through that socket (for assertions)
    client_key, client_public_key, known_hosts, host_public_key   the suite's ssh files
    bin_dir        a directory with the `ssh` wrapper; first on PATH, ssh reads $HOME/.ssh/config
    hostname, veth, state_dir, data_root, pidns, init_pid, timings
    """

    def __init__(self, basetemp: Path | str | None = None, images: tuple[str, ...] = ("containai:latest",),
                 slot: int | None = None, host_socket: str = HOST_SOCKET, data_tmpfs: str | None = "4g") -> None:
        self.basetemp = Path(basetemp) if basetemp else None
        self.images = tuple(images)
        self._wanted_slot = slot
        self.host_socket = host_socket
        self.data_tmpfs = data_tmpfs
        self.context = CONTEXT
        self.user = USER
        self.timings: dict[str, float] = {}
        self.client = None
        self.init_pid: int | None = None
        self.pidns: int | None = None
        self._process: subprocess.Popen | None = None
        self._lock = None
        self._stopped = False
        self.slot: Slot | None = None
        self.recorded: dict = {}

    # names, once a slot is taken
    @property
    def address(self) -> str:
        return self.slot.address

    @property
    def host_address(self) -> str:
        return self.slot.host_address

    @property
    def veth(self) -> str:
        return self.slot.veth

    @property
    def hostname(self) -> str:
        return self.slot.name

    @property
    def state_dir(self) -> Path:
        return self.slot.state_dir

    @property
    def data_root(self) -> Path:
        return self.slot.data_root

    @property
    def socket(self) -> str:
        return self.slot.socket

    @property
    def unix_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.address}"

    @property
    def docker_host(self) -> str:
        return f"ssh://{self.destination}"

    @property
    def client_key(self) -> Path:
        return self.state_dir / "client" / "id_ed25519"

    @property
    def client_public_key(self) -> Path:
        return self.state_dir / "client" / "id_ed25519.pub"

    @property
    def no_docker_key(self) -> Path:
        return self.state_dir / "client" / "id_no_docker"

    @property
    def no_forwarding_key(self) -> Path:
        return self.state_dir / "client" / "id_no_forwarding"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "client" / "known_hosts"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def tls_host(self) -> str:
        return f"tcp://{self.address}:{TLS_PORT}"

    @property
    def host_public_key(self) -> Path:
        return self.state_dir / "sshd" / "ssh_host_ed25519_key.pub"

    @property
    def bin_dir(self) -> Path:
        return self.state_dir / "bin"

    # --- life --------------------------------------------------------------------------------

    def start(self) -> "RemoteHost":
        if os.geteuid() != 0:
            raise RuntimeError("the remote host needs root")
        for tool in ("unshare", "ip", "sshd", "ssh", "ssh-keygen", "dockerd", "docker"):
            if shutil.which(tool, path=_STD_PATH + ":" + os.environ.get("PATH", "")) is None:
                raise RuntimeError(f"{tool} not found (scripts/setup.sh installs it)")
        if not os.path.exists(self.host_socket):
            raise RuntimeError(f"no host engine socket at {self.host_socket}")
        started = time.monotonic()
        self._take_slot()
        try:
            self._start()
        except BaseException:
            self.stop(check=False)
            raise
        self.timings["setup"] = time.monotonic() - started
        return self

    def _take_slot(self) -> None:
        candidates = [self._wanted_slot] if self._wanted_slot is not None else range(SLOTS)
        for index in candidates:
            slot = Slot(index)
            lock = _try_lock(slot)
            if lock is not None:
                self.slot, self._lock = slot, lock
                _clean_slot(slot)  # what an interrupted run left in this slot
                return
        raise RuntimeError(f"every remote-host slot is in use by another session ({list(candidates)})")

    def _start(self) -> None:
        slot, t0 = self.slot, time.monotonic()
        state = slot.state_dir
        for sub in ("sshd", "client", "bin", "exec", "etc-docker", "docker-config"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(state / "client", 0o700)
        slot.data_root.mkdir(parents=True, exist_ok=True)
        self._write_ssh_files()
        self._write_tls_files()
        (state / "daemon.json").write_text("{}\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's compiled-in privsep dir
        Path("/etc/docker").mkdir(exist_ok=True)  # the mount point of the remote's own /etc/docker
        check = _run(shutil.which("sshd", path=_STD_PATH), "-t", "-f", str(state / "sshd" / "sshd_config"), check=False)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t: {check.stderr.strip()}")
        self.timings["files"] = time.monotonic() - t0

        config = {
            "state": str(state), "hostname": slot.name, "address": slot.address, "socket": slot.socket,
            "isolate": self._isolated_dirs(), "data_root": str(slot.data_root), "data_tmpfs": self.data_tmpfs,
            "dockerd": self._dockerd_argv(), "sshd": [shutil.which("sshd", path=_STD_PATH), "-D", "-f",
                                                      str(state / "sshd" / "sshd_config"), "-E",
                                                      str(state / "sshd" / "sshd.log")],
        }
        env = {"PATH": _STD_PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
        with open(state / "init.log", "ab") as init_log:
            self._process = subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "private", "--pid", "--mount-proc", "--uts",
                 "--fork", "--kill-child", "--", sys.executable, "-I", "-S", os.path.abspath(__file__), "--init",
                 str(state), json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=init_log, cwd="/", env=env, text=True,
                bufsize=1, start_new_session=True,
            )
        self._expect("waiting")
        self.init_pid = self._find_init()
        self.pidns = _pidns(self.init_pid)
        if self.pidns is None or self.pidns == _pidns("self"):
            raise RuntimeError("the remote host's init is not in a pid namespace of its own")
        self._record()
        _run("ip", "link", "add", slot.veth, "type", "veth", "peer", "name", "eth0", "netns", str(self.init_pid))
        _run("ip", "addr", "add", f"{slot.host_address}/30", "dev", slot.veth)
        _run("ip", "link", "set", slot.veth, "up")
        self.timings["namespace"] = time.monotonic() - t0
        self._process.stdin.write("go\n")
        self._process.stdin.flush()
        self._expect("ready")
        self._record()
        self.timings["daemons"] = time.monotonic() - t0

        import docker

        self.client = docker.DockerClient(base_url=self.unix_host, version="1.41", timeout=120)
        self.client.ping()
        t1 = time.monotonic()
        for image in self.images:
            self.load_image(image)
        self.timings["images"] = time.monotonic() - t1

    def _isolated_dirs(self) -> list[str]:
        dirs = ["/tmp", "/var/tmp"]
        if self.basetemp is not None:
            base = self.basetemp.resolve()
            root = base.parent if base.parent.name.startswith("pytest-of-") else base
            dirs.append(str(root))
        chosen: list[str] = []
        for directory in dirs:
            if os.path.isdir(directory) and not any(directory == c or directory.startswith(c.rstrip("/") + "/")
                                                    for c in chosen):
                chosen.append(directory)
        return chosen

    def _dockerd_argv(self) -> list[str]:
        slot, state = self.slot, self.slot.state_dir
        return [shutil.which("dockerd", path=_STD_PATH), f"--data-root={slot.data_root}",
                f"--exec-root={state / 'exec'}", f"--pidfile={state / 'dockerd.pid'}", f"--host=unix://{slot.socket}",
                f"--config-file={state / 'daemon.json'}", f"--bip={BRIDGE_IP}", "--iptables=false",
                "--ip6tables=false", "--storage-driver=overlay2", f"--cgroup-parent=/{slot.name}",
                f"--host={self.tls_host}", "--tlsverify", f"--tlscacert={self.tls_dir / 'ca.pem'}",
                f"--tlscert={self.tls_dir / 'server-cert.pem'}", f"--tlskey={self.tls_dir / 'server-key.pem'}"]

    def _write_tls_files(self) -> None:
        """A CA of this run's own, a server certificate for the address, and a client one."""
        tls = self.tls_dir
        tls.mkdir(mode=0o700, exist_ok=True)
        openssl = shutil.which("openssl", path=_STD_PATH)
        if openssl is None:
            raise RuntimeError("openssl not found (scripts/setup.sh installs it)")
        curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run(openssl, "req", "-x509", *curve, "-keyout", str(tls / "ca-key.pem"), "-out", str(tls / "ca.pem"),
             "-days", "3", "-subj", "/CN=cai test CA")
        for role, subject, extensions in (
                ("server", f"/CN={self.address}", f"subjectAltName=IP:{self.address}\nextendedKeyUsage=serverAuth\n"),
                ("client", "/CN=cai test client", "extendedKeyUsage=clientAuth\n")):
            (tls / f"{role}.ext").write_text(extensions)
            _run(openssl, "req", *curve, "-keyout", str(tls / f"{role}-key.pem"), "-out", str(tls / f"{role}.csr"),
                 "-subj", subject)
            _run(openssl, "x509", "-req", "-in", str(tls / f"{role}.csr"), "-CA", str(tls / "ca.pem"),
                 "-CAkey", str(tls / "ca-key.pem"), "-CAcreateserial", "-days", "3", "-extfile", str(tls / f"{role}.ext"),
                 "-out", str(tls / f"{role}-cert.pem"))

    def _write_ssh_files(self) -> None:
        state = self.state_dir
        sshd = state / "sshd"
        keygen = shutil.which("ssh-keygen", path=_STD_PATH)
        _run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", f"{self.hostname} host key", "-f",
             str(sshd / "ssh_host_ed25519_key"))
        _run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "cai test suite", "-f", str(self.client_key))
        # A second key logs in where `docker` is not on the PATH, as on a host whose docker lives
        # where a non-interactive login does not look.
        _run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "cai test suite, no docker", "-f", str(self.no_docker_key))
        no_docker = 'command="PATH=/var/empty; export PATH; exec /bin/sh -c \\"$SSH_ORIGINAL_COMMAND\\"" '
        # A third may run commands (docker's dial-stdio) but not forward (the jump to a container).
        _run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "cai test suite, no forwarding", "-f",
             str(self.no_forwarding_key))
        (sshd / "authorized_keys").write_text(
            self.client_public_key.read_text()
            + no_docker + self.no_docker_key.with_suffix(".pub").read_text()
            + "no-port-forwarding " + self.no_forwarding_key.with_suffix(".pub").read_text())
        host_key = self.host_public_key.read_text().split()
        self.known_hosts.write_text(f"{self.address} {host_key[0]} {host_key[1]}\n")
        (sshd / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}:22",
            f"HostKey {sshd / 'ssh_host_ed25519_key'}",
            f"PidFile {sshd / 'sshd.pid'}",
            f"AuthorizedKeysFile {sshd / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowTcpForwarding yes",
            "AllowStreamLocalForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "MaxStartups 200",
            "MaxSessions 200",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        real_ssh = shutil.which("ssh", path=_STD_PATH)
        wrapper = self.bin_dir / "ssh"
        wrapper.write_text(_SSH_WRAPPER.format(ssh=real_ssh))
        wrapper.chmod(0o755)

    def _expect(self, word: str) -> None:
        """Wait for the init to print `word`; its `error: ...` (or its death) is an exception."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        line = result[0].strip() if result else ""
        if line == word:
            return
        log = ""
        try:
            log = (self.state_dir / "init.log").read_text()[-3000:]
        except OSError:
            pass
        raise RuntimeError(f"remote host init: expected {word!r}, got {line or 'nothing'!r}; init.log:\n{log}")

    def _find_init(self) -> int:
        parent = self._process.pid
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            children = []
        if not children:
            children = [str(pid) for pid in _pids() if _ppid(pid) == parent]
        if len(children) != 1:
            raise RuntimeError(f"cannot find the init under unshare {parent}: {children}")
        return int(children[0])

    def _record(self) -> None:
        """pids.json: host pid and start time of unshare, the init and (once up) sshd, dockerd and
        containerd, for `cleanup_leftovers()` and the teardown check."""
        procs = {"unshare": self._process.pid, "init": self.init_pid}
        if self.pidns is not None:
            for name in ("dockerd", "sshd"):
                pidfile = self.state_dir / ("dockerd.pid" if name == "dockerd" else "sshd/sshd.pid")
                try:
                    pid = _host_pid(int(pidfile.read_text().split()[0]), self.pidns)
                except (OSError, ValueError, IndexError):
                    pid = None
                if pid:
                    procs[name] = pid
            for pid, comm in processes_in(self.pidns):
                if comm == "containerd":
                    procs["containerd"] = pid
        record = {"slot": self.slot.index, "pidns": self.pidns,
                  "processes": {name: [pid, _starttime(pid)] for name, pid in procs.items() if pid}}
        (self.state_dir / "pids.json").write_text(json.dumps(record, indent=1) + "\n")
        self.recorded = record

    def processes(self) -> list[tuple[int, str]]:
        """(host pid, comm) of every process of the remote host, now."""
        return processes_in(self.pidns) if self.pidns is not None else []

    def stop(self, check: bool = True) -> None:
        """Kill the whole host and remove everything it left; with `check`, raise if anything
        remains (veth, process, directory)."""
        if self.slot is None or self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        try:
            if self.client is not None:
                self.client.close()
                self.client = None
            if self.init_pid is not None and self.pidns is not None and _pidns(self.init_pid) == self.pidns:
                try:
                    os.kill(self.init_pid, signal.SIGKILL)  # the kernel kills the whole pid namespace
                except ProcessLookupError:
                    pass
            if self._process is not None:
                try:
                    self._process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=15)
                for stream in (self._process.stdin, self._process.stdout):
                    try:
                        stream.close()
                    except (OSError, ValueError):
                        pass
            if self.pidns is not None:
                deadline = time.monotonic() + 15
                while processes_in(self.pidns) and time.monotonic() < deadline:
                    time.sleep(0.02)
            self.timings["teardown_kill"] = time.monotonic() - started
            _clean_slot(self.slot)
            if check:
                self.verify_gone()
        finally:
            self.timings["teardown"] = time.monotonic() - started
            if self._lock is not None:
                _unlock(self.slot, self._lock)
                self._lock = None

    def verify_gone(self) -> None:
        left = []
        if _link_exists(self.veth):
            left.append(f"veth {self.veth}")
        if self.pidns is not None and processes_in(self.pidns):
            left.append(f"processes {processes_in(self.pidns)}")
        for directory in (self.state_dir, self.data_root):
            if directory.exists():
                left.append(str(directory))
        prefixes = (str(self.state_dir) + "/", str(self.data_root) + "/")
        left += [f"mount {m}" for m in _mountpoints() if m.startswith(prefixes) or m == str(self.data_root)]
        if left:
            raise RuntimeError(f"the remote host left: {', '.join(left)}")

    def __enter__(self) -> "RemoteHost":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- using it ----------------------------------------------------------------------------

    def load_image(self, reference: str) -> None:
        """`docker save REF | docker load` from this host's engine into the remote one."""
        env = {"PATH": os.environ.get("PATH", _STD_PATH), "DOCKER_CONFIG": str(self.state_dir / "docker-config")}
        save = subprocess.Popen(["docker", "-H", f"unix://{self.host_socket}", "save", reference],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        load = subprocess.run(["docker", "-H", self.unix_host, "load", "-q"], stdin=save.stdout,
                              capture_output=True, text=True, env=env, timeout=300)
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace")
        if save.wait(timeout=60) != 0 or load.returncode != 0:
            raise RuntimeError(f"loading {reference} into the remote engine: {save_err.strip()} {load.stderr.strip()}")

    def ssh_config_block(self) -> str:
        return "\n".join([
            _BEGIN,
            f"Host {self.address}",
            f"    User {self.user}",
            f"    IdentityFile \"{self.client_key}\"",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile \"{self.known_hosts}\"",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    PreferredAuthentications publickey",
            "    PasswordAuthentication no",
            "    GSSAPIAuthentication no",
            "    ConnectTimeout 10",
            _END,
            "",
        ])

    def write_ssh_config(self, home: Path | str) -> Path:
        """`home/.ssh/config` with a `Host ADDR` block for this host (any earlier one replaced,
        everything else kept, the block last so that an Include at the top stays global)."""
        ssh_dir = Path(home) / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = ssh_dir / "config"
        lines = path.read_text().splitlines() if path.exists() else []
        kept, skipping = [], False
        for line in lines:
            if line == _BEGIN:
                skipping = True
            elif line == _END and skipping:
                skipping = False
            elif not skipping:
                kept.append(line)
        text = "\n".join(kept).rstrip("\n")
        path.write_text((text + "\n\n" if text else "") + self.ssh_config_block())
        path.chmod(0o600)
        return path

    def env(self, home: Path | str) -> dict[str, str]:
        """HOME, DOCKER_CONFIG and PATH (the ssh wrapper first) for a child run with `home`."""
        home = Path(home)
        return {"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"),
                "PATH": f"{self.bin_dir}:{os.environ.get('PATH', _STD_PATH)}"}

    def add_context(self, home: Path | str, name: str | None = None) -> str:
        """The docker context `cai-test-remote` (host=ssh://root@ADDR) in `home`'s docker config,
        and `home`'s ssh config for ADDR. Run the docker CLI or cai with `env(home)`."""
        name = name or self.context
        self.write_ssh_config(home)
        env = {**os.environ, **self.env(home)}
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        exists = subprocess.run(["docker", "context", "inspect", name], env=env, capture_output=True, timeout=30)
        if exists.returncode != 0:
            _run("docker", "context", "create", name, "--docker", f"host={self.docker_host}", env=env)
        return name

    def add_tls_context(self, home: Path | str, name: str = TLS_CONTEXT) -> str:
        """The docker context `cai-test-tls` (host=tcp://ADDR:2376 with the run's client certificate)
        in `home`'s docker config: an engine cai has no ssh to."""
        env = {**os.environ, **self.env(home)}
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        exists = subprocess.run(["docker", "context", "inspect", name], env=env, capture_output=True, timeout=30)
        if exists.returncode != 0:
            tls = self.tls_dir
            _run("docker", "context", "create", name, "--docker",
                 f"host={self.tls_host},ca={tls / 'ca.pem'},cert={tls / 'client-cert.pem'},key={tls / 'client-key.pem'}",
                 env=env)
        return name

    def ssh_argv(self, *command: str, options: tuple[str, ...] = ()) -> list[str]:
        """`ssh` to the remote host with the suite's files spelled out (no ssh config needed)."""
        return [shutil.which("ssh", path=_STD_PATH), "-F", "/dev/null", "-o", f"User={self.user}",
                "-o", f"IdentityFile={self.client_key}", "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *options, "--", self.address, *command]

    def ssh(self, *command: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(*command), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kwargs)

    def nsenter_argv(self, *command: str) -> list[str]:
        """Run `command` on the remote host without ssh (its network, mounts, pids, hostname)."""
        return ["nsenter", f"--target={self.init_pid}", "--net", "--mount", "--pid", "--uts", "--", *command]

    def reset(self) -> None:
        """Remove every container, volume and user network of the remote engine; images stay."""
        for container in self.client.containers.list(all=True):
            container.remove(force=True, v=True)
        for volume in self.client.volumes.list():
            volume.remove(force=True)
        for network in self.client.networks.list():
            if network.name not in ("bridge", "host", "none"):
                network.remove()


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


# --- the remote host's init (runs inside the namespaces) -------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_MS_BIND, _MS_REC, _MNT_DETACH = 0x1000, 0x4000, 2


def _mount(source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {source} on {target}: {os.strerror(code)}")


def _umount_detach(target: str) -> None:
    _libc.umount2(target.encode(), _MNT_DETACH)


def _say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


def _log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX)
    probe.settimeout(1)
    try:
        probe.connect(path)
        probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return b" 200 " in probe.recv(256)
    except OSError:
        return False
    finally:
        probe.close()


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as probe:
            probe.settimeout(2)
            return probe.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _kill_namespace() -> None:
    """Every process of this pid namespace but the init. Only ever as pid 1 of a namespace of its
    own: kill(-1) by root anywhere else would kill the whole machine."""
    if os.getpid() != 1:
        return
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def _init_main(state: str, config: dict) -> None:
    """pid 1 of the remote host: mounts, network, dockerd, sshd; then reap until killed or until
    stdin (a pipe from the test process) closes, when it kills everything."""
    os.chdir("/")
    socket.sethostname(config["hostname"])
    # The host's container filesystems and network namespaces, copied into this mount namespace,
    # are none of the remote host's business; a copy would also pin them.
    entries = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mountpoint, fstype = _unescape(fields[4]), fields[fields.index("-") + 1]
        if fstype in ("overlay", "nsfs") or mountpoint.startswith(("/var/lib/docker/", "/run/docker/")):
            entries.append(mountpoint)
    for mountpoint in sorted(entries, key=lambda p: -p.count("/")):
        _umount_detach(mountpoint)
    for directory in config["isolate"]:  # a bind mount of a local path finds nothing of this host's
        _mount("tmpfs", directory, "tmpfs", 0, "mode=1777")
    for directory in ("/run/docker", "/run/containerd"):  # the host engine's exec roots
        if os.path.isdir(directory):
            _mount("tmpfs", directory, "tmpfs", 0, "mode=755")
    if config.get("data_tmpfs"):  # the engine's data in memory: no fsync on load, nothing to delete
        _mount("tmpfs", config["data_root"], "tmpfs", 0, f"mode=711,size={config['data_tmpfs']}")
    _mount(f"{state}/etc-docker", "/etc/docker", None, _MS_BIND)  # its own key.json, so its own daemon ID
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    _say("waiting")
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    subprocess.run(["ip", "link", "set", "eth0", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{config['address']}/30", "dev", "eth0"], check=True)

    quiet = {"stdin": subprocess.DEVNULL, "start_new_session": True}
    with open(f"{state}/dockerd.log", "ab") as log:
        dockerd = subprocess.Popen(config["dockerd"], stdout=log, stderr=subprocess.STDOUT, **quiet)
    deadline = time.monotonic() + 45
    while not _answers(config["socket"]):
        if dockerd.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not start; see {state}/dockerd.log")
        time.sleep(0.05)
    seen = set()
    for target in ("/run/docker.sock", "/var/run/docker.sock"):
        real = os.path.realpath(target)
        if real in seen:
            continue
        seen.add(real)
        if not os.path.exists(real):
            raise RuntimeError(f"{real} is missing: nothing to bind the remote engine's socket over")
        _mount(config["socket"], real, None, _MS_BIND)
    sshd = subprocess.Popen(config["sshd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **quiet)
    deadline = time.monotonic() + 15
    while not _listening(config["address"], 22):
        if sshd.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start; see {state}/sshd/sshd.log")
        time.sleep(0.02)
    # Last, as this init may run from /root/.pyenv and imports nothing after this: root's own empty
    # home, so no ~/.bashrc of this host's (pyenv init costs every ssh command 0.3 s), no ~/.docker
    # (a current context would send `docker system dial-stdio` elsewhere), no ~/.ssh.
    _mount("tmpfs", "/root", "tmpfs", 0, "mode=700")
    _log("ready")
    _say("ready")

    def watch_stdin() -> None:
        while sys.stdin.readline():
            pass
        _log("stdin closed: killing the remote host")
        _kill_namespace()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.5)
        except InterruptedError:
            pass


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--init":
    try:
        _init_main(sys.argv[2], json.loads(sys.argv[3]))
    except BaseException as exc:  # noqa: BLE001 - told to the test process, then everything dies
        _log(f"error: {exc!r}")
        _say(f"error: {exc}")
        _kill_namespace()
        os._exit(1)
