"""`cai export`, `cai import` and `cai stop --export` against dockerd, locally and through a second context."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import threading

import pytest

from conftest import AGENT_IMAGE, RUN_ID, RUN_LABEL, RecordingProxy, agent_workspace, run_cai, unique


def tree(path):
    """name → (type, mode, uid, gid, content) for every entry of a gzip tar."""
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: (m.type, m.mode, m.uid, m.gid, archive.extractfile(m).read() if m.isfile() else None)
                for m in archive}


@pytest.fixture(scope="module")
def agent(tmp_path_factory, docker_client, agent_image):
    """A workspace container with its own HOME, a config with excludes, and data in its volume."""
    home = tmp_path_factory.mktemp("export-home")
    volume = unique("cai-test-vol")
    config = home / ".config" / "containai"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('default_excludes = ["shell", "/secret.txt"]\n')
    workspace = agent_workspace(tmp_path_factory, "export-ws")
    done = run_cai(home, "run", "--no-agent", "--data-volume", volume, str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    script = ("cd /mnt/agent-data && mkdir -p claude/sub shell/bashrc.d && printf 'x\\0y' > claude/bin && "
              "echo s > claude/settings.json && chmod 640 claude/settings.json && echo t > secret.txt && "
              "echo p > shell/bashrc.d/a.priv.sh && echo keep > shell/bashrc.d/b.sh && chmod 700 claude/sub")
    assert run_cai(home, "exec", "--container", name, "--", "sh", "-c", script).returncode == 0
    yield home, name, volume
    docker_client.api.remove_container(name, force=True)
    docker_client.api.remove_volume(volume, force=True)


def helpers(docker_client, *volumes):
    """cai's helpers for these volumes (other tests may run helpers of their own meanwhile)."""
    found = docker_client.containers.list(all=True, filters={"label": "containai.helper=true"})
    return [c for c in found if c.labels.get("containai.helper.volume") in volumes]


def test_export_of_a_container_streams_through_the_api(agent, tmp_path, docker_client):
    home, name, _ = agent
    done = run_cai(home, "export", "--container", name, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip()
    assert re.fullmatch(re.escape(str(tmp_path)) + r"/containai-export-\d{8}-\d{6}\.tgz", path)
    assert done.stderr == ""  # [OK] lines are for --verbose
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    entries = tree(path)
    assert sorted(entries) == [".", "./claude", "./claude/bin", "./claude/settings.json", "./claude/sub"]
    assert entries["./claude/settings.json"][1:] == (0o640, 1000, 1000, b"s\n")
    assert entries["./claude/bin"][4] == b"x\0y"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []  # no temp file left beside it
    assert helpers(docker_client, agent[2]) == []


def test_no_excludes_and_volume_mode_through_a_helper(agent, tmp_path, docker_client):
    home, name, volume = agent
    docker_client.api.stop(name)  # the helper path, and no running container needed
    try:
        done = run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(tmp_path / "all.tgz"))
        assert done.returncode == 0, done.stderr
        assert {"./secret.txt", "./shell/bashrc.d/a.priv.sh"} <= set(tree(tmp_path / "all.tgz"))
        assert helpers(docker_client, volume) == []
    finally:
        docker_client.api.start(name)


def test_round_trip_gives_the_same_tree(agent, tmp_path, docker_client):
    home, name, volume = agent
    first = tmp_path / "first.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(first)).returncode == 0
    copy = unique("cai-test-copy")
    try:
        done = run_cai(home, "--verbose", "import", "--data-volume", copy, "--from", str(first))
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1] == f"[OK] Imported {len(tree(first)) - 2} entries into volume {copy}"
        second = tmp_path / "second.tgz"
        assert run_cai(home, "export", "--data-volume", copy, "--no-excludes", "-o", str(second)).returncode == 0
        expected = {k: v for k, v in tree(first).items() if k != "./shell/bashrc.d/a.priv.sh"}  # *.priv.* stays out
        assert tree(second) == expected
        assert helpers(docker_client, volume, copy) == []
    finally:
        docker_client.api.remove_volume(copy, force=True)


def test_import_dry_run_lists_and_writes_nothing(agent, tmp_path, docker_client):
    home, _, volume = agent
    archive = tmp_path / "a.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(archive)).returncode == 0
    target = unique("cai-test-dry")
    done = run_cai(home, "import", "--data-volume", target, "--from", str(archive), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "./claude/settings.json" in done.stdout.splitlines()
    assert "./shell/bashrc.d/a.priv.sh" not in done.stdout.splitlines()
    assert not docker_client.volumes.list(filters={"name": target})


def _bad_archive(path, kind):
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("./fine")
        tar.addfile(ok, io.BytesIO(b""))
        if kind == "through-symlink":
            link = tarfile.TarInfo("./l")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
        bad = tarfile.TarInfo({"traversal": "./../../etc/x", "absolute": "/etc/x", "through-symlink": "./l/passwd",
                               "device": "./d"}[kind])
        bad.type = {"device": tarfile.CHRTYPE}.get(kind, tarfile.REGTYPE)
        tar.addfile(bad, io.BytesIO(b"") if bad.type == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("kind", ["traversal", "absolute", "through-symlink", "device", "truncated"])
def test_hostile_archive_writes_nothing(agent, tmp_path, docker_client, kind):
    home, _, volume = agent
    before = tmp_path / "before.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(before)).returncode == 0
    if kind == "truncated":
        bad = tmp_path / "cut.tgz"
        bad.write_bytes(before.read_bytes()[:-30])
    else:
        bad = _bad_archive(tmp_path / "bad.tgz", kind)
    done = run_cai(home, "import", "--data-volume", volume, "--from", str(bad))
    assert done.returncode == 1
    assert "Nothing was written." in done.stderr
    after = tmp_path / "after.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(after)).returncode == 0
    assert tree(after) == tree(before)
    assert helpers(docker_client, volume) == []


def test_stop_export_writes_the_archive_then_stops(tmp_path_factory, home, docker_client, tmp_path):
    workspace = agent_workspace(tmp_path_factory, "stopexp-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    name = done.stdout.strip()
    try:
        stopped = run_cai(home, "stop", "--container", name, "--export", cwd=str(tmp_path))
        assert stopped.returncode == 0, stopped.stderr
        written = list(tmp_path.glob("containai-export-*.tgz"))
        assert len(written) == 1 and stopped.stdout == f"{written[0]}\n"  # for a script, as `cai export` does
        assert docker_client.api.inspect_container(name)["State"]["Status"] == "exited"
    finally:
        docker_client.api.remove_container(name, force=True)


def test_stop_export_failure_keeps_the_container_running(make_container, home, tmp_path, docker_client):
    c = make_container(labels={"containai.managed": "true", "containai.workspace": str(tmp_path),
                               "containai.data-volume": unique("cai-test-missing")})
    done = run_cai(home, "stop", "--container", c.name, "--export", cwd=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "[ERROR] Export failed. Use --force to stop anyway."
    assert docker_client.api.inspect_container(c.name)["State"]["Status"] == "running"
    forced = run_cai(home, "stop", "--container", c.name, "--export", "--force", cwd=str(tmp_path))
    assert forced.returncode == 0
    assert "[WARN] Export failed, continuing due to --force" in forced.stderr.splitlines()


def test_export_and_import_through_another_context_use_no_host_paths(agent, tmp_path, docker_client):
    home, _, volume = agent
    proxy = RecordingProxy(tmp_path / "engine.sock")
    context = unique("cai-remote")
    env = {**os.environ, "DOCKER_CONFIG": str(home / ".docker")}
    subprocess.run(["docker", "context", "create", context, "--docker", f"host=unix://{proxy.path}"],
                   check=True, capture_output=True, env=env)
    copy = unique("cai-test-remote")
    try:
        exported = run_cai(home, "--context", context, "export", "--data-volume", volume, "-o", str(tmp_path / "r.tgz"))
        assert exported.returncode == 0, exported.stderr
        imported = run_cai(home, "--context", context, "import", "--data-volume", copy, "--from", str(tmp_path / "r.tgz"))
        assert imported.returncode == 0, imported.stderr
        creates = proxy.container_creates()
        assert len(creates) == 2  # one helper each way, both seen at the context's endpoint
        for body in creates:
            assert body["Labels"]["containai.helper"] == "true"
            assert body["Labels"]["containai.helper.role"] in ("export", "import")
            assert body["HostConfig"]["NetworkMode"] == "none"
            assert [bind.split(":")[0] for bind in body["HostConfig"]["Binds"]] == [volume if body["Labels"]["containai.helper.role"] == "export" else copy]
            assert not body["HostConfig"].get("Mounts")
        assert {m.name for m in tarfile.open(tmp_path / "r.tgz")} >= {"./claude/settings.json"}
    finally:
        proxy.close()
        subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True, env=env)
        docker_client.api.remove_volume(copy, force=True)


def _on_a_pty(argv, env):
    import pty
    import sys

    primary, secondary = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "cai", *argv], stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    return child.wait(timeout=60), seen


def test_export_and_import_show_progress_only_on_a_tty(agent, tmp_path, docker_client):
    home, _, volume = agent
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    archive = tmp_path / "p.tgz"
    code, seen = _on_a_pty(["export", "--data-volume", volume, "-o", str(archive)], env)
    assert code == 0
    assert re.search(rb"\rExporting: [\d.]+ ?(B|KiB|MiB), \d+ entries", seen), seen
    copy = unique("cai-test-tty")
    try:
        code, seen = _on_a_pty(["import", "--data-volume", copy, "--from", str(archive)], env)
        assert code == 0, seen
        entries = len(tree(archive)) - 1
        assert re.search(rb"\rImporting: \[#+\] [\d.]+ ?(B|KiB|MiB) / [\d.]+ ?(B|KiB|MiB), %d / %d entries" % (entries, entries), seen), seen
    finally:
        docker_client.api.remove_volume(copy, force=True)
    quiet = run_cai(home, "import", "--data-volume", copy, "--from", str(archive))  # no terminal: nothing extra
    try:
        assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    finally:
        docker_client.api.remove_volume(copy, force=True)


class CuttingProxy(RecordingProxy):
    """A relay to dockerd that breaks the connection of the first archive request after `cut_after`
    bytes have crossed it (downstream for an export, upstream for an import), as a dying engine would."""

    def __init__(self, path, cut_after):
        self.cut_after, self.cut = cut_after, threading.Event()
        super().__init__(path)

    def passes(self, data, upstream, state):
        if upstream and re.search(rb"(GET|PUT) /v[\d.]+/containers/[^ ]+/archive", data) and not self.cut.is_set():
            state["archive"] = True
        if state.get("archive"):
            state["moved"] = state.get("moved", 0) + len(data)
            if state["moved"] > self.cut_after:
                self.cut.set()
                return False
        return True


@pytest.fixture()
def cut_context(agent, tmp_path):
    env = {**os.environ, "DOCKER_CONFIG": str(agent[0] / ".docker")}
    made = []

    def make(cut_after):
        proxy = CuttingProxy(tmp_path / f"cut-{len(made)}.sock", cut_after)
        name = unique("cai-cut")
        subprocess.run(["docker", "context", "create", name, "--docker", f"host=unix://{proxy.path}"],
                       check=True, capture_output=True, env=env)
        made.append((proxy, name))
        return proxy, name

    yield make
    for proxy, name in made:
        proxy.close()
        subprocess.run(["docker", "context", "rm", "-f", name], capture_output=True, env=env)


def test_an_engine_dying_mid_export_keeps_the_old_file(agent, tmp_path, docker_client, cut_context):
    home, _, volume = agent
    docker_client.containers.run(AGENT_IMAGE, ["sh", "-c", "head -c 3000000 /dev/urandom > /d/noise"], remove=True,
                                 volumes={volume: {"bind": "/d", "mode": "rw"}}, labels={RUN_LABEL: RUN_ID})
    proxy, context = cut_context(cut_after=1_000_000)
    target = tmp_path / "backup.tgz"
    target.write_bytes(b"the old backup")
    done = run_cai(home, "--context", context, "export", "--data-volume", volume, "--no-excludes", "-o", str(target))
    assert proxy.cut.is_set(), done.stderr
    assert done.returncode == 1
    assert done.stderr.startswith("[ERROR] Docker daemon is not accessible"), done.stderr
    assert "Unexpected error" not in done.stderr
    assert target.read_bytes() == b"the old backup"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


def test_import_refuses_while_the_agent_can_write_the_volume(agent, tmp_path, docker_client):
    """A running container that mounts the volume could rename the import's work directory."""
    home, name, volume = agent
    before = tmp_path / "before.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(before)).returncode == 0
    done = run_cai(home, "import", "--data-volume", volume, "--from", str(before))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"[ERROR] Volume {volume} is in use by a running container: {name}",
                                        "Stop it first (cai stop --container NAME); nothing was written."]
    assert helpers(docker_client, volume) == []


def test_an_engine_dying_mid_import_leaves_the_old_tree(agent, tmp_path, docker_client, cut_context):
    home, name, volume = agent
    docker_client.api.stop(name)
    try:
        _dying_import(agent, tmp_path, docker_client, cut_context)
    finally:
        docker_client.api.start(name)


def _dying_import(agent, tmp_path, docker_client, cut_context):
    home, _, volume = agent
    before = tmp_path / "before.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(before)).returncode == 0
    big = tmp_path / "big.tgz"
    with tarfile.open(big, "w:gz") as tar:
        info = tarfile.TarInfo("./big")
        info.size = 4_000_000
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    proxy, context = cut_context(cut_after=1_000_000)
    done = run_cai(home, "--context", context, "import", "--data-volume", volume, "--from", str(big))
    assert proxy.cut.is_set(), done.stderr
    assert done.returncode == 1
    assert done.stderr.startswith("[ERROR] Docker daemon is not accessible"), done.stderr
    after = tmp_path / "after.tgz"
    assert run_cai(home, "export", "--data-volume", volume, "--no-excludes", "-o", str(after)).returncode == 0
    assert tree(after) == tree(before)
    assert helpers(docker_client, volume) == []


# --- what the agent may have planted, and archives from other tools ---------------------------


@pytest.fixture()
def fresh_volume(docker_client):
    name = unique("cai-test-plant")
    docker_client.volumes.create(name, labels={RUN_LABEL: RUN_ID})
    yield name
    for container in docker_client.containers.list(all=True, filters={"volume": name}):
        container.remove(force=True)
    docker_client.api.remove_volume(name, force=True)


def _in_volume(docker_client, volume, script, user="root"):
    return docker_client.containers.run(AGENT_IMAGE, ["sh", "-c", script], entrypoint=[], remove=True, user=user,
                                        volumes={volume: {"bind": "/v", "mode": "rw"}}, labels={RUN_LABEL: RUN_ID},
                                        network_mode="none").decode()


def _archive_of(tmp_path, members):
    path = tmp_path / "a.tgz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = 1_700_000_000, 1000, 1000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, extra, 0o755  # as bsdtar writes them
                tar.addfile(info)
            else:
                info.size, info.mode = len(extra), 0o644
                tar.addfile(info, io.BytesIO(extra))
    return path


def test_a_work_directory_planted_by_the_agent_is_only_data(home, tmp_path, docker_client, fresh_volume):
    """The agent makes what looks like an interrupted swap, its `old` a link to /bin and a payload
    that would make a setuid-root shell if root ever ran it. Root must follow none of it."""
    plant = ("cd /v && W=.cai-import-aaaaaaaaaaaaaaaa && mkdir -p $W/new && echo out > $W/phase && ln -s /bin $W/old && "
             "printf '#!/bin/sh\\ncp /bin/dash /v/.rootsh; chmod 4755 /v/.rootsh\\nexec \"$@\"\\n' > env && chmod 755 env && "
             "cp env $W/new/env && echo kept > data.txt")
    _in_volume(docker_client, fresh_volume, "chown 1000:1000 /v", user="root")
    _in_volume(docker_client, fresh_volume, plant, user="1000")
    archive = _archive_of(tmp_path, [(".", "dir", None), ("./fresh.txt", "file", b"new\n")])
    done = run_cai(home, "--verbose", "import", "--data-volume", fresh_volume, "--from", str(archive))
    assert done.returncode == 0, done.stderr
    assert "interrupted" not in done.stderr
    listing = _in_volume(docker_client, fresh_volume, "ls -A /v; ls -l /bin/env | cut -c1-10")
    assert listing.split() == ["fresh.txt", "-rwxr-xr-x"], listing


def test_names_that_look_like_work_directories_and_755_links_round_trip(home, tmp_path, docker_client, fresh_volume):
    members = [(".", "dir", None), ("./.cai-import-ZZZZZZZZZZZZZZZZ", "dir", None),
               ("./.cai-import-ZZZZZZZZZZZZZZZZ/x", "file", b"x\n"), ("./lnk", "link", "/usr/bin/python3")]
    archive = _archive_of(tmp_path, members)
    for _ in range(2):  # the second import replaces the first's tree exactly
        done = run_cai(home, "import", "--data-volume", fresh_volume, "--from", str(archive))
        assert done.returncode == 0, done.stderr
    exported = tmp_path / "back.tgz"
    assert run_cai(home, "export", "--data-volume", fresh_volume, "-o", str(exported)).returncode == 0
    assert sorted(tree(exported)) == [".", "./.cai-import-ZZZZZZZZZZZZZZZZ", "./.cai-import-ZZZZZZZZZZZZZZZZ/x", "./lnk"]


def test_export_refuses_a_volume_caught_mid_swap(home, tmp_path, docker_client, fresh_volume):
    _in_volume(docker_client, fresh_volume, "cd /v && echo a > a && mkdir -m 700 .cai-import-0123456789abcdef && "
                                            "echo in > .cai-import-0123456789abcdef/phase")
    target = tmp_path / "half.tgz"
    done = run_cai(home, "export", "--data-volume", fresh_volume, "-o", str(target))
    assert done.returncode == 1
    assert "[ERROR] The volume is in the middle of an interrupted import (.cai-import-0123456789abcdef: in)" in done.stderr.splitlines()
    assert not target.exists() and list(tmp_path.glob("*.part")) == []
