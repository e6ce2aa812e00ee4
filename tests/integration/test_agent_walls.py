"""Issue 24 §4, the smaller walls, against the real engine and sshd: a user's `Host *` reaches
none of cai's own ssh runs; agent-controlled output is read with a bound; agent containers have a
pids limit and only the capabilities sshd and the init need."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import run_cai


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_hostile_host_star_runs_no_local_command_and_binds_no_forward(ws, home, tmp_path):
    """ssh reads ~/.ssh/config through the passwd entry, not HOME: a wrapper on PATH hands cai's
    own ssh the hostile file with -F instead (the user's real config stays untouched)."""
    workspace, name = ws
    marker = tmp_path / "local-command-ran"
    forward = free_port()
    hostile = tmp_path / "ssh_config"
    hostile.write_text(f"""Host *
    ForwardAgent yes
    ForwardX11 yes
    LocalForward 127.0.0.1:{forward} 127.0.0.1:22
    RemoteForward 127.0.0.1:{free_port()} 127.0.0.1:22
    PermitLocalCommand yes
    LocalCommand touch {marker}
""")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {hostile} "$@"\n')
    wrapper.chmod(0o755)
    runtime = Path(tempfile.mkdtemp(prefix="cw", dir="/tmp"))  # a master of its own, made under the hostile config
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "XDG_RUNTIME_DIR": str(runtime)}
    try:
        for sharing in ("0", "1"):
            done = run_cai(home, "exec", "--container", name, "--", "echo", "ok", env={**env, "CAI_SSH_MULTIPLEX": sharing})
            assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
        # The master lives on (ControlPersist) and would hold the LocalForward's port.
        assert any(stat.S_ISSOCK(p.lstat().st_mode) for p in (runtime / "cai").iterdir())
        assert not marker.exists()
        assert not listening(forward)
    finally:
        for socket_path in (runtime / "cai").glob("*-*"):
            if stat.S_ISSOCK(socket_path.lstat().st_mode):
                subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "x"], capture_output=True, timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)


# --- capabilities and the pids limit -----------------------------------------------------------

WANTED_CAPS = {"SETUID", "SETGID", "SYS_CHROOT", "CHOWN", "AUDIT_WRITE", "DAC_OVERRIDE", "FOWNER", "NET_BIND_SERVICE"}

# A package from an apt repository on the container's own loopback: apt's _apt sandbox fetches it
# (root then moves what _apt fetched), and its postinst chowns, then chmods, as packages do.
APT_SCRIPT = r"""
set -e
rm -rf /tmp/repo /tmp/pkg
mkdir -p /tmp/repo /tmp/pkg/DEBIAN /tmp/pkg/usr/local/bin /tmp/pkg/var/lib/cai-hello
printf 'Package: cai-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@127.0.0.1>\nDescription: t\n' >/tmp/pkg/DEBIAN/control
printf '#!/bin/sh\nset -e\nchown agent:agent /var/lib/cai-hello\nchmod 750 /var/lib/cai-hello\n' >/tmp/pkg/DEBIAN/postinst
printf '#!/bin/sh\necho hello from the package\n' >/tmp/pkg/usr/local/bin/cai-hello
chmod 755 /tmp/pkg/DEBIAN/postinst /tmp/pkg/usr/local/bin/cai-hello
dpkg-deb --root-owner-group -b /tmp/pkg /tmp/repo/cai-hello_1.0_all.deb >/dev/null
cd /tmp/repo
{ dpkg-deb -f cai-hello_1.0_all.deb; echo "Filename: ./cai-hello_1.0_all.deb"
  echo "Size: $(stat -c %s cai-hello_1.0_all.deb)"; echo "SHA256: $(sha256sum cai-hello_1.0_all.deb | cut -d' ' -f1)"; echo; } >Packages
chmod -R a+rX /tmp/repo
python3 -m http.server --bind 127.0.0.1 "$1" --directory /tmp/repo >/dev/null 2>&1 & server=$!
trap 'kill $server' EXIT
for _ in $(seq 50); do python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null && break; sleep 0.1; done
echo "deb [trusted=yes] http://127.0.0.1:$1 ./" >/tmp/repo.list
apt="apt-get -q -o Dir::Etc::sourcelist=/tmp/repo.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
$apt update >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 3; }
$apt install -y cai-hello >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 4; }
cai-hello
dpkg-query -W -f='${Status}\n' cai-hello
stat -c '%U %a' /var/lib/cai-hello
apt-get remove -y -q cai-hello >/dev/null 2>&1
"""


def test_a_new_container_has_a_pids_limit_and_only_the_capabilities_it_needs(ws, home, docker_client):
    _, name = ws
    host_config = docker_client.api.inspect_container(name)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert set(host_config["CapAdd"]) == WANTED_CAPS
    assert host_config["PidsLimit"] == 4096

    def as_root(*argv: str):
        return run_cai(home, "exec", "--container", name, "-u", "root", "--", *argv)

    raw = as_root("python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)")
    assert raw.returncode == 1 and "PermissionError" in raw.stderr, raw.stderr
    packet = as_root("python3", "-c", "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)")
    assert packet.returncode == 1 and "PermissionError" in packet.stderr, packet.stderr
    node = as_root("mknod", "/tmp/cai-null", "c", "1", "3")
    assert node.returncode == 1 and "Operation not permitted" in node.stderr, node.stderr
    # What root still does: the README's `cai exec -u root -- apt-get install`.
    installed = as_root("bash", "-c", APT_SCRIPT, "bash", str(free_port()))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.splitlines() == ["hello from the package", "install ok installed", "agent 750"]


def test_sshd_gives_a_pty_and_the_init_its_directories_under_the_reduced_set(ws, home, docker_client):
    _, name = ws
    conf = home / ".ssh" / "containai.d" / f"{name}.conf"
    # ssh -tt: sshd chowns the pty to the agent and writes its audit record.
    done = subprocess.run(["ssh", "-F", str(conf), "-tt", name, "tty; stat -c '%U' $(tty)"], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/") and lines[1] == "agent", done.stdout
    checked = docker_client.containers.get(name).exec_run(["stat", "-c", "%U %a", "/run/user/1000", "/run/sshd"])
    assert checked.output.decode().splitlines() == ["agent 700", "root 755"]


def test_a_fork_bomb_stays_inside_the_pids_limit(tmp_path, tmp_path_factory, docker_client):
    """The limit comes from the user's config; a small one keeps the bomb light on a shared host."""
    from conftest import agent_workspace

    home = tmp_path / "home"
    (home / ".config" / "containai").mkdir(parents=True)
    (home / ".config" / "containai" / "config.toml").write_text("[container]\npids_limit = 128\n")
    workspace = agent_workspace(tmp_path_factory, "bomb-ws")
    done = run_cai(home, "run", "--no-agent", "--cpus", "0.5", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    container = docker_client.containers.get(name)
    try:
        # Never light it without the limit in place: it would take the host.
        assert docker_client.api.inspect_container(name)["HostConfig"]["PidsLimit"] == 128
        bomb = run_cai(home, "exec", "--container", name, "--", "sh", "-c",
                       "setsid bash -c 'b() { b | b & }; b' </dev/null >/dev/null 2>&1 &")
        assert bomb.returncode == 0, bomb.stderr

        def pids() -> int:
            return int(docker_client.api.stats(name, stream=False)["pids_stats"].get("current", 0))

        deadline = time.monotonic() + 30
        peak = 0
        while time.monotonic() < deadline and peak < 120:
            peak = max(peak, pids())
        assert 120 <= peak <= 128
        started = time.monotonic()
        assert docker_client.ping()
        assert subprocess.run(["true"], timeout=5).returncode == 0
        assert time.monotonic() - started < 5
    finally:
        started = time.monotonic()
        container.remove(force=True)
        assert time.monotonic() - started < 30


# --- agent-controlled output is read with a bound ----------------------------------------------

# Processes that the probe lists as session wrappers (their argv names cai-session), with argv of
# about 1.5 MB each: some 60 MB for the probe to send.
FLOOD = r"""
word=$(head -c 100000 /dev/zero | tr '\0' x)
for i in $(seq 40); do
    setsid bash -c 'sleep 600; :' /usr/local/lib/containai/cai-session $(for j in $(seq 15); do printf '%s ' "$word"; done) \
        </dev/null >/dev/null 2>&1 &
done
"""

PEAK_RSS = r"""
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(done.returncode)
"""


def test_a_flood_of_probe_output_is_unknown_not_the_hosts_memory(fresh, home, docker_client):
    import json
    import sys

    _, name = fresh()
    flooded = run_cai(home, "exec", "--container", name, "--", "bash", "-c", FLOOD)
    assert flooded.returncode == 0, flooded.stderr
    container = docker_client.containers.get(name)
    sent = container.exec_run(["sh", "-c", "grep -alF /usr/local/lib/containai/cai-session /proc/[0-9]*/cmdline | xargs cat 2>/dev/null | wc -c"])
    assert int(sent.output) > 50_000_000
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    env.pop("XDG_CONFIG_HOME", None)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "cai", "status", "--container", name, "--json"],
                          capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    sessions = json.loads(done.stdout)["sessions"]
    assert sessions["state"] == "unknown" and "more than 4MiB of output" in sessions["reason"], sessions
    peak_kib = int(done.stderr.splitlines()[-1])
    assert peak_kib < 120_000, f"cai status peaked at {peak_kib} KiB"
