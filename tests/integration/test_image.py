"""The agent image built by setup: user, directories, sshd settings, per-container host keys."""

from __future__ import annotations

from conftest import wait_for


def sh(container, command: str, user: str = "root") -> str:
    code, out = container.exec_run(["bash", "-c", command], user=user)
    assert code == 0, out
    return out.decode()


def test_agent_user_and_directories(make_container):
    c = make_container()
    assert sh(c, "getent passwd agent") .startswith("agent:x:1000:1000:")
    assert sh(c, "getent passwd agent").strip().endswith(":/home/agent:/bin/bash")
    assert not sh(c, "getent shadow agent").split(":")[1].startswith("!")
    assert sh(c, "stat -c '%U %a' /home/agent/workspace /mnt/agent-data /home/agent/.ssh").split("\n")[:3] == [
        "agent 755", "agent 755", "agent 700"]


def test_sshd_settings(make_container):
    c = make_container()
    wait_for(lambda: "sshd" in c.top()["Processes"].__str__())
    effective = sh(c, "/usr/sbin/sshd -T")
    for setting in ("passwordauthentication no", "pubkeyauthentication yes", "usepam no",
                    "disableforwarding yes", "clientaliveinterval 15"):
        assert setting in effective.splitlines()


def test_host_keys_differ_per_container(make_container):
    a, b = make_container(), make_container()
    key = "cat /etc/ssh/ssh_host_ed25519_key.pub"
    wait_for(lambda: a.exec_run(["test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub"]).exit_code == 0)
    wait_for(lambda: b.exec_run(["test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub"]).exit_code == 0)
    assert sh(a, key) != sh(b, key)


def test_container_outlives_sshd(make_container):
    c = make_container()
    first = wait_for(lambda: c.exec_run(["pgrep", "-x", "sshd"]).output.decode().split())
    c.exec_run(["pkill", "-x", "sshd"])
    second = wait_for(lambda: [p for p in c.exec_run(["pgrep", "-x", "sshd"]).output.decode().split() if p not in first], timeout=10)
    c.reload()
    assert c.status == "running" and second
