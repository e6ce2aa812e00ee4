"""Each class of engine failure, against real sockets, gives the original's two lines, rc 1, within 5 s."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading

import pytest

from conftest import create_context


def _serve(path: str, on_accept) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)

    def loop():
        held = []
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if on_accept(conn):
                held.append(conn)

    threading.Thread(target=loop, daemon=True).start()
    return server


def assert_pair(result, first: str, second: str | None):
    assert result.code == 1, result
    lines = result.err_lines
    assert f"[ERROR] {first}" in lines
    if second is not None:
        assert lines[lines.index(f"[ERROR] {first}") + 1] == f"[ERROR]   {second}"
    assert "Traceback" not in result.err
    assert result.seconds < 5.0


def test_socket_with_no_daemon(cai, tmp_path, docker_client):
    create_context("nodaemon", f"unix://{tmp_path}/absent.sock")
    result = cai("--context", "nodaemon", "doctor")
    assert_pair(result, "Docker Desktop is not running", "Start Docker Desktop and try again")
    assert "  Reachable:  no" in result.out.splitlines()


def test_refused_socket(cai, tmp_path, docker_client):
    path = tmp_path / "dead.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: connect() is refused
    create_context("refused", f"unix://{path}")
    assert_pair(cai("--context", "refused", "doctor"), "Docker Desktop is not running", "Start Docker Desktop and try again")
    dead.close()


def test_nonexistent_context(cai, docker_client):
    result = cai("--context", "nosuchcontext", "doctor", "--json")
    assert_pair(result, "Docker context or connection issue", "Docker context not found: nosuchcontext (from --context)")
    import json

    document = json.loads(result.out)
    assert document["schema_version"] == 1
    assert document["ok"] is False and document["engine"]["reachable"] is False


def test_daemon_that_never_answers_times_out(cai, tmp_path, docker_client):
    path = str(tmp_path / "hang.sock")
    server = _serve(path, lambda conn: True)
    create_context("hanging", f"unix://{path}")
    try:
        assert_pair(cai("--context", "hanging", "doctor"), "Docker command timed out", "Check that the engine behind the Docker context answers")
    finally:
        server.close()


def test_anything_else_is_not_accessible(cai, tmp_path, docker_client):
    path = str(tmp_path / "rude.sock")

    def slam(conn):
        conn.close()
        return False

    server = _serve(path, slam)
    create_context("rude", f"unix://{path}")
    try:
        result = cai("--context", "rude", "doctor")
        assert_pair(result, "Docker daemon is not accessible", None)
        assert len([l for l in result.err_lines if l.startswith("[ERROR]")]) >= 2
    finally:
        server.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to drop CAP_DAC_OVERRIDE")
def test_permission_denied(cai, tmp_path, docker_client):
    path = tmp_path / "locked.sock"
    server = _serve(str(path), lambda conn: True)
    os.chmod(path, 0)
    create_context("locked", f"unix://{path}")
    try:
        # Root ignores file modes unless it gives up CAP_DAC_OVERRIDE, which setpriv does for the child.
        import subprocess
        import time

        started = time.monotonic()
        done = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "cai", "--context", "locked", "doctor"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
        from conftest import Result

        result = Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)
        assert_pair(result, "Permission denied accessing Docker", "Ensure Docker Desktop is running, or add user to docker group")
    finally:
        server.close()


def test_missing_docker_cli(cai, docker_client):
    bindir = os.path.dirname(sys.executable)
    result = cai("docker", "ps", env={"PATH": bindir})
    assert result.code == 1
    assert result.err_lines == ["[ERROR] Docker is not installed or not in PATH"]
    doctor = cai("doctor", "--json", env={"PATH": bindir})
    import json

    assert json.loads(doctor.out)["tools"]["docker"] is None
    assert doctor.code == 1
    assert "[ERROR] docker is not on PATH" in doctor.err_lines
