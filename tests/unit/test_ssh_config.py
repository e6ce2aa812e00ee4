"""`cai ssh-config`: the block is NAME.conf's, self-contained, readable by paramiko; the container is
found as port and inspect find theirs, and a block is printed only for a container whose NAME.conf
is its own."""

from __future__ import annotations

import json
import os

import paramiko
import pytest

from cai import engine, ssh
from cai.commands import ssh_config
from cai.main import cli


@pytest.fixture(autouse=True)
def one_document_per_call(monkeypatch):
    """cli() runs in this process, and a document printed by an earlier test must not count."""
    from cai import output

    monkeypatch.setattr(output, "_json_emitted", False)


def run_cli(capsys, *argv):
    code = cli(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def container(name="proj-main", context="default", cid="3f2a8b1c9d0e" + "0" * 52, status="running", port=2301):
    return engine.Container(id=cid, name=name, context=context, status=status, image="containai:latest",
                            image_id="sha256:1", labels={"containai.managed": "true", "containai.ssh-port": str(port)})


@pytest.fixture()
def found(monkeypatch):
    """The containers the engine has, by name (None: the workspace's); the missing one is rc 10."""
    from cai.errors import CaiError, ExitCode

    table: dict = {}

    def existing(ctx, workspace, name):
        if name not in table:
            raise CaiError(ExitCode.CONTAINER_NOT_FOUND, f"Container not found: {name}")
        return table[name]

    monkeypatch.setattr(ssh_config, "_existing", existing)
    return table


def configured(box):
    from cai import containers

    return ssh.write_host_config(containers.endpoint(box))


def test_the_block_is_name_conf_without_its_comments(capsys, found):
    box = found["proj-main"] = container()
    conf = configured(box).read_text()
    code, out, err = run_cli(capsys, "ssh-config", "proj-main")
    assert (code, err) == (0, "")
    assert out == "".join(line + "\n" for line in conf.splitlines() if line and not line.startswith("#"))
    assert "Include" not in out and "~" not in out


def test_paramiko_reads_what_the_block_says(capsys, found, isolated_home):
    box = found[None] = container(port=2345)
    configured(box)
    code, out, _ = run_cli(capsys, "ssh-config")
    assert code == 0
    host = paramiko.SSHConfig.from_text(out).lookup("proj-main")
    assert (host["hostname"], host["port"], host["user"]) == ("127.0.0.1", "2345", "agent")
    assert host["identityfile"] == [str(ssh.key_path())] and os.path.isabs(host["identityfile"][0])
    assert host["userknownhostsfile"] == str(ssh.known_hosts_path())
    assert host["hostkeyalias"] == ssh.host_key_alias("default", box.id)


def test_a_remote_engines_jump_is_in_the_block(capsys, found, monkeypatch):
    monkeypatch.setattr(engine, "context_endpoint", lambda name: "ssh://me@big:2222")
    box = found["proj-main"] = container(context="big")
    configured(box)
    code, out, _ = run_cli(capsys, "ssh-config", "proj-main", "--json")
    assert code == 0
    host = json.loads(out)["hosts"][0]
    assert (host["proxy_jump"], host["proxy_command"], host["context"]) == ("me@big:2222", None, "big")
    assert paramiko.SSHConfig.from_text(host["config"]).lookup("proj-main")["proxyjump"] == "me@big:2222"


def test_several_blocks_are_separated_by_a_blank_line(capsys, found):
    for name, port in (("a", 2301), ("b", 2302)):
        configured(found.setdefault(name, container(name=name, cid=name * 64, port=port)))
    code, out, _ = run_cli(capsys, "ssh-config", "a", "b", "a")
    assert code == 0
    blocks = out.split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["Host a", "Host b"]
    config = paramiko.SSHConfig.from_text(out)
    assert (config.lookup("a")["port"], config.lookup("b")["port"]) == ("2301", "2302")


def test_json_lists_the_fields_of_the_block(capsys, found):
    box = found["proj-main"] = container()
    configured(box)
    code, out, _ = run_cli(capsys, "ssh-config", "--json", "proj-main")
    document = json.loads(out)
    assert code == 0 and document["schema_version"] == 1
    host = document["hosts"][0]
    assert (host["name"], host["host_name"], host["port"], host["user"]) == ("proj-main", "127.0.0.1", 2301, "agent")
    assert (host["identity_file"], host["known_hosts_file"]) == (str(ssh.key_path()), str(ssh.known_hosts_path()))
    assert host["config"].startswith("Host proj-main\n") and host["config"].endswith("ForwardAgent no\n")


def test_no_config_of_its_own_is_rc_1_with_the_way_to_make_one(capsys, found):
    found["proj-main"] = container()
    configured(container(cid="f" * 64))  # the same name, an older container: other pins
    code, out, err = run_cli(capsys, "ssh-config", "proj-main")
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == "[ERROR] Container proj-main has no SSH config on this machine yet"
    assert "cai exec --container proj-main -- true" in err


def test_a_missing_container_prints_no_block_of_the_others(capsys, found):
    configured(found.setdefault("a", container(name="a", cid="a" * 64)))
    code, out, err = run_cli(capsys, "ssh-config", "a", "gone", "--json")
    assert code == 10
    assert json.loads(out)["error"]["kind"] == "container_not_found"


def test_a_stopped_container_is_printed_with_a_warning(capsys, found):
    box = found["proj-main"] = container(status="exited")
    configured(box)
    code, out, err = run_cli(capsys, "ssh-config", "proj-main")
    assert code == 0 and out.startswith("Host proj-main\n")
    assert err.startswith("[WARN] Container proj-main is exited")


@pytest.mark.parametrize(("argv", "first_line"), [
    (["a", "--all"], "[ERROR] NAME and --all are mutually exclusive"),
    (["--all", "-w", "/"], "[ERROR] --all and --workspace are mutually exclusive"),
    (["a", "--workspace", "/"], "[ERROR] NAME and --workspace are mutually exclusive"),
    (["-bad"], "[ERROR] Unknown option: -bad"),
    (["bad name"], "[ERROR] Invalid container name: bad name"),
])
def test_argv_is_checked_before_any_engine_call(capsys, monkeypatch, argv, first_line):
    monkeypatch.setattr(engine, "Engine", None)  # any engine call would fail loudly
    code, out, err = run_cli(capsys, "ssh-config", *argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == first_line


def test_all_takes_the_containers_whose_name_conf_is_their_own(capsys, monkeypatch):
    own, stale, never = container(name="own", cid="1" * 64), container(name="stale", cid="2" * 64), \
        container(name="never", cid="3" * 64, status="exited")
    configured(own)
    configured(container(name="stale", cid="9" * 64))  # NAME.conf of a container since recreated
    boxes = {box.id: box for box in (own, stale, never)}

    class FakeEngine:
        def __init__(self, context):
            self.context = context

        def inspect_container(self, cid):
            return boxes.get(cid)

    listed = [{"Id": box.id, "Names": [f"/{box.name}"], "Labels": dict(box.labels)} for box in boxes.values()]
    monkeypatch.setattr(engine, "Engine", FakeEngine)
    monkeypatch.setattr(engine, "list_containers", lambda eng, filters: listed if eng.context == "default" else [])
    monkeypatch.setattr(engine, "context_exists", lambda name: False)
    code, out, err = run_cli(capsys, "ssh-config", "--all", "--json")
    assert (code, err) == (0, "")
    assert [host["name"] for host in json.loads(out)["hosts"]] == ["own"]
