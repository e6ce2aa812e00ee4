"""The first callers of an endpoint share one dial: one holds the lock beside the control socket
and dials the master, the others wait for its socket (bounded) and then use it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cai import ssh
from cai.errors import CaiError


@pytest.fixture()
def socket_path(tmp_path):
    directory = tmp_path / "cai"
    directory.mkdir(mode=0o700)
    return directory / "0123456789abcdef-2301"


def appear_later(path, delay=0.2):
    timer = threading.Timer(delay, path.write_text, args=("",))
    timer.start()
    return timer


class Child:
    """A Popen stand-in whose ssh ends when told."""

    def __init__(self):
        self.code = None

    def poll(self):
        return self.code


def test_a_live_master_is_used_at_once_and_no_lock_file_is_made(socket_path):
    socket_path.write_text("")
    assert ssh.claim_dial(socket_path) is None
    assert sorted(p.name for p in socket_path.parent.iterdir()) == [socket_path.name]


def test_the_first_caller_dials_and_the_others_wait_for_its_master(socket_path):
    lock = ssh.claim_dial(socket_path)
    assert lock is not None
    assert oct(os.stat(ssh._dial_lock_path(socket_path)).st_mode & 0o777) == "0o600"
    try:
        timer = appear_later(socket_path)
        started = time.monotonic()
        assert ssh.claim_dial(socket_path) is None
        waited = time.monotonic() - started
        timer.join()
        assert 0.15 < waited < 2.0
    finally:
        os.close(lock)


def test_a_failed_dial_passes_the_lock_to_one_waiter(socket_path):
    lock = ssh.claim_dial(socket_path)
    threading.Timer(0.2, os.close, args=(lock,)).start()
    taken = ssh.claim_dial(socket_path)
    assert taken is not None  # no master came: this caller dials next
    try:
        assert ssh.claim_dial(socket_path, interrupted=[2]) is None  # and the rest still wait
    finally:
        os.close(taken)


def test_a_waiter_gives_up_after_its_bound_and_dials_itself(socket_path, monkeypatch):
    monkeypatch.setattr(ssh, "DIAL_WAIT_S", 0.2)
    lock = ssh.claim_dial(socket_path)
    try:
        started = time.monotonic()
        assert ssh.claim_dial(socket_path) is None
        assert time.monotonic() - started < 1.0
    finally:
        os.close(lock)


def test_a_signal_ends_the_wait(socket_path):
    lock = ssh.claim_dial(socket_path)
    try:
        started = time.monotonic()
        assert ssh.claim_dial(socket_path, interrupted=[15]) is None
        assert time.monotonic() - started < 0.5
    finally:
        os.close(lock)


def test_no_control_directory_to_lock_in_means_no_wait(tmp_path):
    assert ssh.claim_dial(tmp_path / "gone" / "0123456789abcdef-2301") is None


@pytest.mark.parametrize("ending", ["socket", "exit"])
def test_the_dialler_holds_the_lock_until_its_master_is_up_or_its_ssh_ended(socket_path, ending):
    lock = ssh.claim_dial(socket_path)
    child = Child()
    if ending == "socket":
        timer = appear_later(socket_path)
    else:
        timer = threading.Timer(0.2, setattr, args=(child, "code", 255))
        timer.start()
    started = time.monotonic()
    ssh.hand_over_dial(lock, socket_path, child)
    assert 0.15 < time.monotonic() - started < 2.0
    timer.join()
    with pytest.raises(OSError):
        os.fstat(lock)  # closed: the waiters go
    if ending == "exit":
        again = ssh.claim_dial(socket_path)
        assert again is not None
        os.close(again)


def test_the_dialler_lets_go_after_its_hold(socket_path, monkeypatch):
    monkeypatch.setattr(ssh, "DIAL_HOLD_S", 0.2)
    lock = ssh.claim_dial(socket_path)
    started = time.monotonic()
    ssh.hand_over_dial(lock, socket_path, Child())
    assert time.monotonic() - started < 1.0


def test_a_session_whose_ssh_cannot_start_leaves_the_lock_free(tmp_path, monkeypatch):
    directory = tmp_path / "cai"
    directory.mkdir(mode=0o700)
    monkeypatch.setattr(ssh, "control_dir", lambda: directory)
    monkeypatch.setenv("CAI_SSH_MULTIPLEX", "1")
    endpoint = ssh.Endpoint("proj-main", 2301, "cai-default-abc123")

    def popen(argv, **_):
        assert "ControlMaster=auto" in argv
        raise FileNotFoundError("ssh")

    monkeypatch.setattr(ssh.subprocess, "Popen", popen)
    with pytest.raises(CaiError):
        ssh.run_session(endpoint, "true", tty=None, shared=True)
    lock = ssh.claim_dial(ssh.control_path(directory, endpoint))
    assert lock is not None
    os.close(lock)


def test_the_slow_path_keeps_a_master_made_since_the_keys_were_pinned(isolated_home, tmp_path, monkeypatch):
    directory = tmp_path / "cai"
    directory.mkdir(mode=0o700)
    monkeypatch.setattr(ssh, "control_dir", lambda: directory)
    asked: list[list[str]] = []
    monkeypatch.setattr(ssh.proc, "run", lambda argv, **_: asked.append(list(argv)))
    endpoint = ssh.Endpoint("proj-main", 2301, "cai-default-abc123")
    ssh.pin_host_keys(endpoint.alias, ["ssh-ed25519 AAAA"])
    master = ssh.control_path(directory, endpoint)
    time.sleep(0.02)  # past the file clock's tick
    master.write_text("")
    assert ssh.release_master(endpoint, wait_s=0, keep_checked=True) == 0
    assert asked == []
    assert ssh.release_master(endpoint, wait_s=0) == 1  # a failed fast path releases it whatever its age
    time.sleep(0.02)
    ssh.pin_host_keys(endpoint.alias, ["ssh-ed25519 BBBB"])  # pinned again since: its login checked the old ones
    assert ssh.release_master(endpoint, wait_s=0, keep_checked=True) == 1
    assert len(asked) == 2


# --- one engine look-up for calls that arrive together -----------------------------------------


@pytest.fixture()
def pinned_endpoint(isolated_home):
    endpoint = ssh.Endpoint("proj-main", 2301, "cai-default-abc123")
    ssh.pin_host_keys(endpoint.alias, ["ssh-ed25519 AAAA"])
    return endpoint


def test_the_first_call_without_an_entry_finds_and_the_next_waits_for_its_answer(pinned_endpoint):
    from cai import reach

    known, finding = reach.find_or_wait("key")
    assert known is None and finding is not None

    def found():
        reach.remember("key", pinned_endpoint)
        reach.release(finding)

    threading.Timer(0.2, found).start()
    started = time.monotonic()
    known, second = reach.find_or_wait("key")
    assert 0.15 < time.monotonic() - started < 2.0
    assert second is None and (known.name, known.port, known.alias) == ("proj-main", 2301, "cai-default-abc123")


def test_after_a_finder_that_found_nothing_the_others_ask_alone_at_once(pinned_endpoint):
    from cai import reach

    _, finding = reach.find_or_wait("key")
    threading.Timer(0.2, reach.release, args=(finding,)).start()
    assert reach.find_or_wait("key") == (None, None)  # no lock held: the rest go side by side


def test_a_waiter_for_the_finder_gives_up_after_its_bound(pinned_endpoint, monkeypatch):
    from cai import reach

    monkeypatch.setattr(reach, "FIND_WAIT_S", 0.2)
    _, finding = reach.find_or_wait("key")
    try:
        started = time.monotonic()
        assert reach.find_or_wait("key") == (None, None)
        assert time.monotonic() - started < 1.0
    finally:
        reach.release(finding)


def test_a_free_lock_and_an_entry_written_meanwhile_is_a_hit(pinned_endpoint):
    from cai import reach

    reach.remember("key", pinned_endpoint)
    known, finding = reach.find_or_wait("key")
    assert finding is None and known.alias == pinned_endpoint.alias
