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
