"""Pure parts of agent sessions: names, the control script's words, and parsing of records the
agent can write (anything there is untrusted text)."""

from __future__ import annotations

import base64
import io
import json
import shlex
import tarfile

import pytest

from cai import agent_sessions as s
from cai import sessions
from cai.errors import CaiError

ID = "3f2a8b1c9d0e" + "0" * 52


def rec(name, mtime="100", log="0", exit_text="", lost="", meta=b'{"command": ["sleep", "9"]}'):
    return "\t".join(["rec", name, mtime, log, exit_text, lost, base64.b64encode(meta).decode()])


@pytest.mark.parametrize("name", ["a", "amber-07", "A_b-9", "x" * 40])
def test_good_names(name):
    assert s.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "_x", "a.b", "a:b", "a b", "../a", "é", "a\nb", "x" * 41, "a\tb", "٣"])
def test_bad_names(name):
    with pytest.raises(CaiError) as caught:
        s.check_name(name)
    assert caught.value.code == 1 and caught.value.message.startswith("Invalid session name")


def test_default_names_are_valid_and_vary():
    names = {s.default_name() for _ in range(50)}
    assert len(names) > 10 and all(s.NAME_RE.match(n) for n in names)


def test_control_command_keeps_every_word():
    command = s.control_command("send", "py", "it's $(rm -rf /) `x`\n\"q\"")
    words = shlex.split(command)
    assert words[:2] == ["bash", "-c"] and words[2] == s.CONTROL_SCRIPT
    assert words[3:] == ["cai-session", "send", "/home/agent/.cai-sessions", "py", "it's $(rm -rf /) `x`\n\"q\""]
    assert "/mnt/agent-data" not in s.CONTROL_SCRIPT  # nothing of a session is in the shared volume


def _run_script(tmp_path, command, workdir=None, environment=None):
    """The session's file, run by this host's bash with its two directories moved under tmp_path."""
    import subprocess

    from cai import ssh

    private, workspace = tmp_path / "private", tmp_path / "ws"
    (workspace / "sub dir").mkdir(parents=True, exist_ok=True)
    private.mkdir(exist_ok=True)
    script = s.session_script("n1", command, workdir, environment or {})
    script = script.replace(s.PRIVATE_DIR, str(private)).replace(ssh.WORKDIR, str(workspace))
    (private / "n1.cmd").write_text(script)
    done = subprocess.run(["bash", "--", str(private / "n1.cmd")], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    return done, private, workspace


def test_session_script_runs_the_words_as_given_in_a_login_shell(tmp_path):
    done, private, workspace = _run_script(
        tmp_path, ["sh", "-c", 'printf "%s|%s|%s\\n" "$K" "$1" "$PWD"', "sh", "$HOME"], "sub dir", {"K": "v w"})
    assert (done.returncode, done.stdout) == (0, f"v w|$HOME|{workspace}/sub dir\n"), done.stderr
    assert (private / "n1.pid").read_text().strip().isdigit()
    assert not (private / "n1.nostart").exists()


def test_session_script_marks_a_command_that_cannot_start_and_a_builtin(tmp_path):
    done, private, _ = _run_script(tmp_path, ["no-such-program-here", "x"])
    assert done.returncode == 127 and "no-such-program-here" in done.stderr
    assert (private / "n1.nostart").read_text() == "127\n"
    (private / "n1.nostart").unlink()
    done, private, _ = _run_script(tmp_path, ["exit", "9"])
    assert done.returncode == 9 and (private / "n1.started").exists() and not (private / "n1.nostart").exists()
    for syntax in (["if", "true"], ["[[", "-n", "x", "]]"], ["{"], ["!"]):  # quoted: never shell syntax here
        (private / "n1.started").unlink(missing_ok=True)
        done, private, _ = _run_script(tmp_path, syntax)
        assert done.returncode == 127 and (private / "n1.nostart").read_text() == "127\n", (syntax, done.stderr)
        assert not (private / "n1.started").exists()
        (private / "n1.nostart").unlink()


def test_listing_states():
    text = "\n".join([
        "now\t1000",
        rec("run", "900"), rec("done", "800", exit_text="7 950"), rec("gone", "700", lost="750"),
        rec("fresh", "990"), rec("old", "100"),
        "tmux\trun\t2",
    ])
    found = {x.name: x for x in s.parse_listing(text, booted=500).sessions}
    assert set(found) == {"run", "done", "gone", "fresh", "old"}
    assert (found["run"].state, found["run"].attached) == ("running", 2)
    assert (found["done"].state, found["done"].exit_code, found["done"].ended) == ("exited", 7, 950)
    assert (found["gone"].state, found["gone"].lost_at, found["gone"].newly_lost) == ("lost", 750, False)
    assert found["fresh"].state == "starting"  # younger than START_GRACE_S
    assert (found["old"].state, found["old"].newly_lost) == ("lost", True)
    assert found["done"].state_text() == "exited (7)" and found["gone"].state_text() == "lost at 1970-01-01T00:12:30Z"


def test_a_running_tmux_session_wins_over_every_record():
    text = "\n".join(["now\t1000", rec("forged", "900", exit_text="0 950"), rec("marked", "900", lost="950"),
                      "tmux\tforged\t0", "tmux\tmarked\t1", "tmux\tolder\t0", "tmux\tbad name\t0"])
    found = {x.name: x for x in s.parse_listing(text).sessions}
    assert set(found) == {"forged", "marked", "older"}  # one an older cai started has no record here
    for name in found:
        assert (found[name].state, found[name].exit_code, found[name].lost_at) == ("running", None, None), name
    assert found["older"].command is None and s.settle_lost(s.parse_listing(text), 500) == []


def test_a_young_record_from_before_the_last_start_is_lost():
    listing = s.parse_listing("now\t1000\n" + rec("x", "990"), booted=995)
    assert listing.sessions[0].state == "lost"


def test_lost_time_is_the_stop_after_the_start_else_now():
    listing = s.parse_listing("now\t1000\n" + rec("a", "100") + "\n" + rec("b", "600"))
    words = s.settle_lost(listing, last_stop=500)
    assert words == ["a", "500", "b", "1000"]


@pytest.mark.parametrize("line", [
    rec("deep", meta=b"[" * 60000 + b"]" * 60000),
    rec("huge", exit_text="99999999999999999999 1"),
    rec("uni", exit_text="\u0663 1"),
    rec("neg", exit_text="-1 1"),
    rec("big", exit_text="256 1"),
    rec("notjson", meta=b"\xff\xfe"),
    rec("list", meta=b'["a"]'),
    rec("mixed", meta=b'{"command": ["a", 3]}'),
    "rec\tbad64\t1\t0\t\t\t!!!",
])
def test_tampered_records_parse_to_nothing_worse_than_unknown(line):
    listing = s.parse_listing(f"now\t1000\n{line}")
    (found,) = listing.sessions
    assert found.exit_code is None and found.state in ("lost", "starting")
    assert found.command in (None, ["sleep", "9"])


@pytest.mark.parametrize("line", ["rec\t../a\t1\t0\t\t\t", "rec\ta b\t1\t0\t\t\t", "rec\tshort", "junk", "now\tx"])
def test_malformed_lines_are_dropped(line):
    assert s.parse_listing(line).sessions == []


def tar_of(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mtime in files:
            info = tarfile.TarInfo(f".records/{name}")
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(".records/link.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    return [buffer.getvalue()[i:i + 700] for i in range(0, len(buffer.getvalue()), 700)]


def test_records_of_a_stopped_container():
    meta = json.dumps({"command": ["make"]}).encode()
    logged = json.dumps({"command": ["make"], "log": True}).encode()
    chunks = tar_of([("a.json", meta, 100), ("a.exit", b"3 150\n", 150), ("b.json", logged, 200),
                     ("b.exit", b"x" * 100000, 300), ("c.json", meta, 250), ("c.lost", b"260\n", 260),
                     ("bad name.json", meta, 1)])
    found = {x.name: x for x in s.from_archive(iter(chunks)).sessions}
    assert set(found) == {"a", "b", "c"}  # not the link, not the bad name
    assert (found["a"].state, found["a"].exit_code, found["a"].started) == ("exited", 3, 100)
    assert (found["b"].state, found["b"].newly_lost, found["b"].has_log) == ("lost", True, True)  # a huge .exit is no end
    assert found["a"].has_log is False
    assert (found["c"].state, found["c"].lost_at, found["c"].newly_lost) == ("lost", 260, False)


def test_a_cut_archive_lists_what_came_before():
    chunks = tar_of([("a.json", b"{}", 100), ("b.json", b"{}", 100)])
    assert [x.name for x in s.from_archive(iter(chunks[:2])).sessions] == ["a"]


def test_archive_records_only_right_in_records_and_bounded(monkeypatch):
    monkeypatch.setattr(s, "_ARCHIVE_BYTES", 50)
    chunks = tar_of([("a.json", b"{}", 100), ("sub/b.json", b"{}", 100), ("c.json", b"x" * 49, 100),
                     ("d.json", b"{}", 100)])
    assert sorted(s._archived_records(iter(chunks))) == ["a.json", "d.json"]  # c would pass the total bound


def test_records_that_show_a_session_running():
    files = {"run.json": (200, b"{}"), "old.json": (50, b"{}"), "done.json": (200, b"{}"), "done.exit": (210, b"0 210"),
             "gone.json": (200, b"{}"), "gone.lost": (210, b"210")}
    found = {x.name: x for x in s._records(files)}
    assert [n for n, x in found.items() if x.exit_code is None and x.lost_at is None] == ["old", "run"]


def test_probe_names_only_the_wrappers_argv():
    lines = [f"/bin/bash\t{s.WRAPPER}\t/mnt/agent-data/sessions/x\ttrain\t",
             f"grep\t-alF\t{s.WRAPPER}\t/proc/1/cmdline\t",
             f"/bin/sh\t-c\techo {s.WRAPPER}\tsh\t",
             f"/bin/bash\t{s.WRAPPER}\t/d\tbad name\t",
             f"/bin/bash\t{s.WRAPPER}\t/d\ttrain\t", f"/bin/bash\t{s.WRAPPER}\t/d\tamber-01\t"]
    assert s.probe_names(lines) == ["amber-01", "train"]


def test_a_detached_session_makes_the_container_busy():
    probe = f"@ss\n@missing\n@proc\n@pts\n0\n@sessions\n/bin/bash\t{s.WRAPPER}\t/d\ttrain\t\n@end\n"
    assert sessions.parse_probe(probe) == (None, 1, ("train",))
    assert sessions.classify(0, 1, 0, 1) is sessions.State.HAS
    assert sessions.classify(None, 1, None, 1) is sessions.State.HAS
    found = sessions.Sessions(sessions.State.HAS, 0, 1, 0, detached=("train",))
    assert found.summary() == "ssh: 0, terminals: 1, exec: 0, detached sessions: train"
    assert found.as_json()["detached_sessions"] == ["train"]


class Box:
    name, running, id, started_at = "box", True, ID, "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(("probe", "recorded", "state", "detached"), [
    (sessions.Sessions(sessions.State.UNKNOWN, reason="probe failed (127)"), ["train"], "has", ("train",)),
    (sessions.Sessions(sessions.State.UNKNOWN, reason="timed out"), [], "unknown", None),
    (sessions.Sessions(sessions.State.UNKNOWN, reason="timed out"), None, "unknown", None),  # records unreadable too
    (sessions.Sessions(sessions.State.NONE, 0, 0, 0), ["train"], "none", None),  # the probe answered: it decides
])
def test_the_guard_counts_recorded_sessions_only_when_the_probe_failed(monkeypatch, probe, recorded, state, detached):
    from cai import session_guard

    monkeypatch.setattr(sessions, "detect", lambda eng, container: probe)
    monkeypatch.setattr(s, "running_by_records", lambda eng, container: recorded)
    found = session_guard.detect(None, Box())
    assert (found.state.value, found.detached) == (state, detached)
    if state == "has":
        assert session_guard.summary(found) == "the session probe failed; by cai's records, detached sessions: train"
        with pytest.raises(CaiError) as refused:
            session_guard.verdict(None, Box(), force=False, interactive=False, verb="kill", command="kill -s TERM")
        assert refused.value.code == 1
        assert refused.value.extra == ("Use --force to kill it anyway: cai kill -s TERM --container box --force",)
    else:
        assert session_guard.verdict(None, Box(), force=False, interactive=False) is None
