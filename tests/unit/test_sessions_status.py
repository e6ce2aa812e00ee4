from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cai import output, sessions
from cai.commands import status

SS_TWO_SSH = """@ss
Recv-Q Send-Q Local Address:Port Peer Address:PortProcess
0      0      172.17.0.2:22      172.17.0.1:50122
0      0      [::ffff:172.17.0.2]:22 [::ffff:172.17.0.1]:50130
0      0      172.17.0.2:41000   140.82.112.3:443
@proc
@pts
0
1
ptmx
@end
"""

PROC_ONE_SSH = """@ss
@missing
@proc
  sl  local_address rem_address   st tx_queue rx_queue
   0: 00000000:0016 00000000:0000 0A 00000000:00000000
   1: 020011AC:0016 010011AC:C3CA 01 00000000:00000000
   2: 020011AC:A028 0370528C:01BB 01 00000000:00000000
   3: 020011AC:0016 010011AC:C3CC 06 00000000:00000000
  sl  local_address                         remote_address                        st
@pts
ptmx
@end
"""


def test_ss_rows_on_port_22_are_counted():
    assert sessions.parse_probe(SS_TWO_SSH) == (2, 2, None)


def test_proc_net_tcp_is_read_when_ss_is_missing():
    # only row 1 is ESTABLISHED (01) on local port 0x0016; row 3 is TIME_WAIT (06)
    assert sessions.parse_probe(PROC_ONE_SSH) == (1, 0, None)


def test_ss_failure_falls_back_to_proc():
    text = PROC_ONE_SSH.replace("@missing", "Recv-Q Send-Q\n@failed")
    assert sessions.parse_probe(text) == (1, 0, None)


def test_neither_source_is_unknown():
    assert sessions.parse_probe("@ss\n@missing\n@proc\n@pts\n@end\n") == (None, 0, None)
    assert sessions.classify(None, 0, 0) is sessions.State.UNKNOWN


def test_extra_lines_and_truncated_output_are_tolerated():
    # the bash probe printed "0 0\n0\n"; junk before the markers is ignored, a cut-off probe is unknown
    assert sessions.parse_probe("0 0\n0\n" + SS_TWO_SSH) == (2, 2, None)
    assert sessions.parse_probe(SS_TWO_SSH.split("@pts")[0]) == (None, None, None)


@pytest.mark.parametrize(
    ("ssh", "ptys", "execs", "state"),
    [
        (0, 0, 0, sessions.State.NONE),
        (0, sessions.PTY_THRESHOLD, 0, sessions.State.NONE),  # one lone pty is not a session
        (0, sessions.PTY_THRESHOLD + 1, 0, sessions.State.HAS),
        (1, 0, 0, sessions.State.HAS),
        (0, 0, 1, sessions.State.HAS),
        (None, 0, 2, sessions.State.HAS),  # known busy even though ssh could not be read
        (0, 0, None, sessions.State.UNKNOWN),
    ],
)
def test_classify(ssh, ptys, execs, state):
    assert sessions.classify(ssh, ptys, execs) is state


NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("started", "shown"),
    [
        ("2026-11-23T11:59:30.123456789Z", "0m"),
        ("2026-11-23T11:15:00Z", "45m"),
        ("2026-11-23T09:55:00.5Z", "2h 4m"),
        ("2026-11-20T07:48:00+00:00", "3d 4h 12m"),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("not a time", None),
    ],
)
def test_uptime(started, shown):
    from cai import clock

    assert clock.format_uptime(started, NOW) == shown


@pytest.mark.parametrize(("size", "shown"), [(0, "0B"), (1855488, "1.77MiB"), (512 * 2**20, "512MiB"), (4 * 2**30, "4GiB"),
                                             (1536, "1.5KiB")])
def test_bytes_size_matches_docker(size, shown):
    assert output.bytes_size(size) == shown


def test_resources_from_stats_subtract_cache_and_use_the_cpu_delta():
    stats = {
        "memory_stats": {"usage": 12 * 2**20, "limit": 512 * 2**20, "stats": {"total_inactive_file": 2 * 2**20}},
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000}, "system_cpu_usage": 2_000_000_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 1_000_000_000},
    }
    assert status.resources_from_stats(stats) == {
        "memory_usage": "10MiB", "memory_bytes": 10 * 2**20, "memory_limit": "512MiB", "memory_limit_bytes": 512 * 2**20,
        "memory_percent": 1.95, "cpu_percent": 0.4}
    report = status.build_report(_Container(), "5m", None, status.resources_from_stats(stats), 300)
    assert report["uptime_seconds"] == 300
    assert status.render_text(report)[-2:] == ["    Memory: 10MiB / 512MiB (2%)", "    CPU: 0.40%"]


def test_resources_without_a_cpu_sample_leave_cpu_out():
    stats = {"memory_stats": {"usage": 2**20, "limit": 2**30}, "cpu_stats": {}, "precpu_stats": {}}
    assert "cpu_percent" not in status.resources_from_stats(stats)


class _Container:
    name, status, image = "c1", "exited", "containai:latest"
    labels = {"containai.workspace": "/src/p"}
    workspace_mount = {"type": "bind", "source": "/src/p"}


def test_report_of_a_stopped_container_has_only_the_required_keys():
    report = status.build_report(_Container(), None, None, None)
    assert list(report) == ["container", "status", "image", "workspace", "agent"]
    assert report["agent"] is None
    assert report["workspace"] == {"path": "/src/p", "mount": "bind", "source": "/src/p", "copy": False}
    assert status.render_text(report) == ["Container: c1", "  Status: exited", "  Image: containai:latest",
                                          "  Workspace: /src/p"]


def test_the_workspace_line_says_copy_or_engine_host():
    from cai import containers

    copy = containers.workspace_report({"containai.workspace": "/src/p"}, {"type": "volume", "source": "c1-workspace"})
    assert status.workspace_line(copy, remote=True) == "  Workspace: copy of /src/p in volume c1-workspace"
    bound = containers.workspace_report({"containai.workspace": "/src/p"}, {"type": "bind", "source": "/srv/p"})
    assert status.workspace_line(bound, remote=True) == "  Workspace: /srv/p (on the engine host)"
    unknown = containers.workspace_report({}, {})
    assert (unknown, status.workspace_line(unknown, remote=False)) == (
        {"path": None, "mount": None, "source": None, "copy": None}, None)


def test_unknown_sessions_keep_the_state_in_json_and_stay_out_of_text():
    found = sessions.Sessions(sessions.State.UNKNOWN, reason="timeout")
    report = status.build_report(_Container(), "5m", found, {})
    assert report["sessions"] == {"state": "unknown", "reason": "timeout"}
    assert "  Sessions (best-effort):" not in status.render_text(report)


# --- a tcp:// engine's logins are `sshd -i` execs -----------------------------------------------

NO_TCP_TABLES = "@ss\n@missing\n@proc\n@pts\nptmx\n@end\n"


def _running(monkeypatch, *answers, released=0):
    """detect() against canned engine answers: the probe's output, then each read of the execs."""
    from cai import engine, ssh

    reads = list(answers)
    monkeypatch.setattr(ssh, "release_master", lambda *a, **k: released)
    monkeypatch.setattr(engine, "exec_captured", lambda *a, **k: ("probe-id", 0, NO_TCP_TABLES))
    monkeypatch.setattr(engine, "running_execs", lambda *a, **k: reads.pop(0) if len(reads) > 1 else reads[0])
    container = engine.Container(id="c" * 64, name="c1", context="build", status="running", image="containai:latest",
                                 image_id="", labels={"containai.ssh-port": "2301"})
    return sessions.detect(engine.Engine("build"), container)


BRIDGE = ("b1", ["/usr/sbin/sshd", "-i"])
PROBE = ("probe-id", ["sh", "-c", "probe"])


def test_a_bridged_login_is_an_ssh_connection_even_when_tcp_tables_are_unreadable(monkeypatch):
    found = _running(monkeypatch, [PROBE, BRIDGE, ("e1", ["bash"])])
    assert (found.state, found.ssh_connections, found.exec_sessions) == (sessions.State.HAS, 1, 1)


def test_the_bridge_of_a_master_just_released_is_read_again_until_it_ends(monkeypatch):
    found = _running(monkeypatch, [PROBE, BRIDGE], [PROBE, BRIDGE], [PROBE], released=1)
    assert (found.state, found.exec_sessions) == (sessions.State.UNKNOWN, 0)  # no TCP table: unknown, not has
    assert found.ssh_connections is None


def test_a_bridge_that_stays_is_someone_inside(monkeypatch):
    found = _running(monkeypatch, [PROBE, BRIDGE], released=1)
    assert (found.state, found.ssh_connections) == (sessions.State.HAS, 1)


def test_resources_read_inside_the_container():
    from cai import cgroups

    found = cgroups.from_inside("1000000 51000000 1000000000 1100000000 209715200 4294967296 10485760\n")
    assert found == {"memory_usage": 199229440, "memory_limit": 4294967296, "cpu_delta": 50_000_000,
                     "system_delta": 100_000_000, "online_cpus": 1}  # 50 ms of CPU in 100 ms: 50 %
    assert cgroups.from_inside("1 2 3 4 5 max 0")["memory_limit"] is None
    assert cgroups.from_inside("1 2 3 4 5 9223372036854771712 0")["memory_limit"] is None
    for junk in ("", "1 2 3", "1 2 4 3 5 6 7", "2 1 3 4 5 6 7", "١ 2 3 4 5 6 7", "a b c d e f g"):
        assert cgroups.from_inside(junk) is None, junk
