"""`cai cp` both ways against a real container, with a real tree and an agent that lies."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import unicodedata
from pathlib import Path

import pytest

from conftest import agent_workspace, run_cai


def made_box(tmp_path_factory, docker_client, prefix):
    """(home, workspace, name, container) of a container `cai run` made, with a HOME of its own."""
    home = tmp_path_factory.mktemp(f"{prefix}-home")
    workspace = agent_workspace(tmp_path_factory, f"{prefix}-ws")
    done = run_cai(home, "run", "--no-agent", str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    return home, workspace, name, docker_client.containers.get(name)


@pytest.fixture(scope="module")
def box(tmp_path_factory, docker_client, agent_image):
    """A container of the module's own: tests here plant things in the agent's home."""
    made = made_box(tmp_path_factory, docker_client, "cp")
    yield made
    docker_client.api.remove_container(made[2], force=True, v=True)


def sh(container, script, user="agent"):
    done = container.exec_run(["sh", "-c", script], user=user)
    return done.exit_code, done.output.decode(errors="replace")


def make_tree(root):
    nfd = unicodedata.normalize("NFD", "café")
    (root / "with space").mkdir(parents=True)
    (root / "with space" / f"{nfd}.txt").write_text("accents\n")
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("run.sh")
    os.link(root / "run.sh", root / "hard")
    (root / "empty").mkdir()
    return nfd


def test_a_tree_goes_in_owned_by_the_agent_and_comes_back_the_same(box, tmp_path):
    home, workspace, _, container = box
    source = tmp_path / "tree"
    nfd = make_tree(source)
    sent = run_cai(home, "cp", str(source), ":inbox/", cwd=str(workspace))
    assert sent.returncode == 1 and "No such directory" in sent.stderr  # a trailing / names a directory
    sent = run_cai(home, "cp", str(source), ":inbox", cwd=str(workspace))
    assert (sent.returncode, sent.stdout, sent.stderr) == (0, "", ""), sent.stderr
    code, listing = sh(container, "cd ~/workspace/inbox && stat -c '%U %a %n' run.sh link hard empty "
                                  "&& ./run.sh && readlink link && [ run.sh -ef hard ] && echo same-inode")
    assert code == 0, listing
    assert listing.splitlines() == ["agent 755 run.sh", "agent 777 link", "agent 755 hard", "agent 755 empty",
                                    "ran", "run.sh", "same-inode"]
    assert sh(container, f"cat ~/workspace/inbox/'with space'/{nfd}.txt")[1] == "accents\n"

    back = tmp_path / "back"
    back.mkdir()
    got = run_cai(home, "cp", ":inbox", str(back), cwd=str(workspace))
    assert got.returncode == 0, got.stderr
    assert (back / "inbox" / "with space" / f"{nfd}.txt").read_text() == "accents\n"
    assert os.readlink(back / "inbox" / "link") == "run.sh"
    assert os.stat(back / "inbox" / "hard").st_ino == os.stat(back / "inbox" / "run.sh").st_ino
    assert os.stat(back / "inbox" / "run.sh").st_mode & 0o777 == 0o755


def test_a_file_can_be_renamed_either_way(box, tmp_path):
    home, workspace, _, container = box
    (tmp_path / "notes.md").write_text("# notes\n")
    assert run_cai(home, "cp", str(tmp_path / "notes.md"), ":renamed.md", cwd=str(workspace)).returncode == 0
    assert sh(container, "cat ~/workspace/renamed.md")[1] == "# notes\n"
    got = run_cai(home, "cp", ":renamed.md", str(tmp_path / "again.md"), cwd=str(workspace))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "again.md").read_text() == "# notes\n"


def test_usage_errors(box, tmp_path):
    home, workspace, _, _ = box
    for argv in (("a", "b"), (":a", ":b")):
        done = run_cai(home, "cp", *argv, cwd=str(workspace))
        assert (done.returncode, done.stderr.splitlines()[0]) == (
            1, "[ERROR] Exactly one of SRC and DEST must be :PATH (a path in the container)")
    missing = run_cai(home, "cp", str(tmp_path / "nope"), ":x", cwd=str(workspace))
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr
    gone = run_cai(home, "cp", ":no-such-file", str(tmp_path), cwd=str(workspace))
    assert gone.returncode == 1 and "No such file or directory in" in gone.stderr


def test_a_link_the_agent_planted_leads_nowhere_root_owns(box, tmp_path, docker_client):
    home, workspace, _, container = box
    assert sh(container, "ln -sfn /etc ~/workspace/drop")[0] == 0
    (tmp_path / "passwd").write_text("owned\n")
    done = run_cai(home, "cp", str(tmp_path / "passwd"), ":drop", cwd=str(workspace))
    assert done.returncode == 1, done.stderr
    assert sh(container, "head -c 5 /etc/passwd")[1] == "root:"
    assert sh(container, "rm ~/workspace/drop")[0] == 0


@pytest.mark.parametrize("evil", ["dot-dot", "absolute-link", "device"])
def test_what_a_lying_agent_sends_is_refused_and_nothing_leaves_dest(box, tmp_path, evil):
    """The agent's ~/.bashrc puts its own `tar` first on PATH, which sends a crafted archive."""
    home, workspace, _, container = box
    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w") as tar:
        info = tarfile.TarInfo("report/ok.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"ok\n"))
        if evil == "dot-dot":
            info = tarfile.TarInfo("report/../../escaped.txt")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"out\n"))
        elif evil == "absolute-link":
            info = tarfile.TarInfo("report/passwd")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info = tarfile.TarInfo("report/null")
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info)
    container.put_archive("/home/agent", _one_file("crafted.tar", crafted.getvalue()))
    assert sh(container, "mkdir -p ~/workspace/report ~/fake && printf '#!/bin/sh\\ncat ~/crafted.tar\\n' > ~/fake/tar "
                         "&& chmod +x ~/fake/tar && cp ~/.bashrc ~/.bashrc.kept "
                         "&& { echo 'PATH=$HOME/fake:$PATH'; cat ~/.bashrc.kept; } > ~/.bashrc")[0] == 0
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        done = run_cai(home, "cp", ":report", str(dest), cwd=str(workspace))
    finally:
        sh(container, "mv ~/.bashrc.kept ~/.bashrc && rm -rf ~/fake ~/crafted.tar ~/workspace/report")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"[ERROR] Refused what {box[2]} sent: "), done.stderr
    assert not [p for p in tmp_path.rglob("*") if p.name == "escaped.txt"]  # nothing beside DEST
    assert not (dest / "report" / "passwd").exists() and not (dest / "report" / "null").exists()


def _debian_python_env():
    """Debian 12's own python3 (3.11.2, a tarfile without extraction filters) running this checkout,
    with the test venv's packages (the same cp311 ABI)."""
    import sysconfig

    if not os.path.exists("/usr/bin/python3"):
        if os.environ.get("CI") == "true":
            pytest.fail("/usr/bin/python3 is missing: CI runs the archive tests with Debian's own Python")
        pytest.skip("no /usr/bin/python3")
    repo = str(Path(__file__).resolve().parents[2])
    return ["/usr/bin/python3"], {"PYTHONPATH": os.pathsep.join([repo, sysconfig.get_paths()["purelib"]])}


@pytest.fixture()
def lying_tar(box):
    """The agent's own `tar` (first on PATH through its ~/.bashrc) sends ~/crafted.tar, whatever cai asked."""
    container = box[3]
    assert sh(container, "mkdir -p ~/fake && printf '#!/bin/sh\\ncat ~/crafted.tar\\n' > ~/fake/tar && chmod +x ~/fake/tar "
                         "&& cp ~/.bashrc ~/.bashrc.kept && { echo 'PATH=$HOME/fake:$PATH'; cat ~/.bashrc.kept; } > ~/.bashrc "
                         "&& mkdir -p ~/workspace/results")[0] == 0

    def plant(data, then=""):
        container.put_archive("/home/agent", _one_file("crafted.tar", data))
        if then:
            assert sh(container, f"printf '#!/bin/sh\\ncat ~/crafted.tar\\n%s\\n' '{then}' > ~/fake/tar")[0] == 0

    yield plant
    sh(container, "mv ~/.bashrc.kept ~/.bashrc && rm -rf ~/fake ~/crafted.tar ~/workspace/results")


@pytest.mark.parametrize("then, said", [("exit 2", "(exit 2)"), ("exec yes", "after the archive's end")])
def test_cp_out_lands_nothing_unless_the_sender_ends_well(box, lying_tar, tmp_path, then, said):
    """A tidy stream followed by a failing tar (tarfile alone would take it for complete), or by
    an endless tail: rc 1, and DEST never appears."""
    import hostile_tars

    home, workspace, name, _ = box
    lying_tar(hostile_tars.good_tree(), then)
    done = run_cai(home, "cp", "--container", name, ":results", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 1 and said in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize("python", ["venv", "debian"])
@pytest.mark.parametrize("attack", ["member outside the top", "authorized_keys beside the top",
                                    "hard link to a file outside, then data", "CVE-2025-4517 chain"])
def test_cp_out_refuses_a_stream_that_reaches_past_src(box, lying_tar, tmp_path, attack, python):
    """`cai cp :results ./results` run from a home: the user's .bashrc and authorized_keys stay
    byte-identical, no ./results appears, and the refusal names the first offending member."""
    import hostile_tars

    home, workspace, name, _ = box
    stream, named = hostile_tars.refused_cases()[attack]
    lying_tar(stream)
    user_home = Path(hostile_tars.home_with_secrets(str(tmp_path)))
    before = {p: p.read_bytes() for p in (user_home / ".bashrc", user_home / ".ssh/authorized_keys")}
    argv, env = ([sys.executable], {}) if python == "venv" else _debian_python_env()
    child_env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), **env}
    done = subprocess.run([*argv, "-m", "cai", "cp", "--container", name, ":results", "./results"], capture_output=True,
                          text=True, env=child_env, stdin=subprocess.DEVNULL, cwd=str(user_home), timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"[ERROR] Refused what {name} sent: ") and named in done.stderr, done.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in user_home.iterdir()) == [".bashrc", ".ssh"]  # no DEST, no staging left
    assert sorted(p.name for p in (user_home / ".ssh").iterdir()) == ["authorized_keys"]


def test_a_stopped_containers_outward_link_is_refused(tmp_path_factory, docker_client, agent_image, tmp_path):
    """The engine's archive of a stopped container holds what the agent left: a link out of SRC."""
    home, workspace, name, container = made_box(tmp_path_factory, docker_client, "cp-stopped")
    try:
        assert sh(container, "mkdir -p ~/workspace/results && echo ok > ~/workspace/results/ok.txt "
                             "&& ln -s ../../.ssh ~/workspace/results/keys")[0] == 0
        container.stop(timeout=1)
        done = run_cai(home, "cp", f"{name}:results", str(tmp_path / "out"))
        assert done.returncode == 1 and "the link 'keys' → '../../.ssh' leads outside" in done.stderr, done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # the test's own HOME; no out, no staging
    finally:
        docker_client.api.remove_container(name, force=True)


def _one_file(name, data):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.gid, info.mode = len(data), 1000, 1000, 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- NAME:PATH, tar streams, and stopped containers ---------------------------------------------


def test_name_colon_path_and_tar_streams_both_ways(box, tmp_path):
    home, workspace, name, container = box
    (tmp_path / "by-name.txt").write_text("named\n")
    sent = run_cai(home, "cp", str(tmp_path / "by-name.txt"), f"{name}:by-name.txt")  # from anywhere: no -w
    assert sent.returncode == 0, sent.stderr
    assert sh(container, "cat ~/workspace/by-name.txt")[1] == "named\n"
    stream = subprocess.run([sys.executable, "-m", "cai", "cp", f"{name}:by-name.txt", "-"], capture_output=True,
                            timeout=60, env=user_env(home))
    assert stream.returncode == 0, stream.stderr
    with tarfile.open(fileobj=io.BytesIO(stream.stdout)) as tar:
        assert tar.extractfile("by-name.txt").read() == b"named\n"
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        info = tarfile.TarInfo("from-stdin/ünï.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"stdin\n"))
    loaded = subprocess.run([sys.executable, "-m", "cai", "cp", "-", f"{name}:"], input=packed.getvalue(),
                            capture_output=True, timeout=60, env=user_env(home))
    assert loaded.returncode == 0, loaded.stderr
    assert sh(container, "stat -c %U ~/workspace/from-stdin/ünï.txt && cat ~/workspace/from-stdin/ünï.txt")[1] == \
        "agent\nstdin\n"
    both = run_cai(home, "cp", "--container", "someone-else", str(tmp_path / "by-name.txt"), f"{name}:x")
    assert both.returncode == 1 and "name two containers" in both.stderr


def user_env(home):
    return {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}


@pytest.fixture()
def stopped_box(tmp_path_factory, docker_client, agent_image):
    """A container of the test's own, to stop after `cai run`: cp must not start it."""
    made = made_box(tmp_path_factory, docker_client, "cp-stopped")
    yield made
    docker_client.api.remove_container(made[2], force=True, v=True)


def test_a_stopped_container_is_copied_both_ways_without_starting_it(stopped_box, tmp_path, docker_client):
    home, workspace, name, container = stopped_box
    source = tmp_path / "tree"
    nfd = make_tree(source)
    container.stop(timeout=1)
    sent = run_cai(home, "cp", str(source), f"{name}:inbox")
    assert sent.returncode == 0, sent.stderr
    back = tmp_path / "back"
    back.mkdir()
    got = run_cai(home, "cp", f"{name}:inbox", str(back))
    assert got.returncode == 0, got.stderr
    container.reload()
    assert container.status == "exited"  # never started
    assert (back / "inbox" / "with space" / f"{nfd}.txt").read_text() == "accents\n"
    assert os.readlink(back / "inbox" / "link") == "run.sh"
    assert os.stat(back / "inbox" / "hard").st_ino == os.stat(back / "inbox" / "run.sh").st_ino
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in (workspace / "inbox").rglob("*") if not p.is_symlink()}
    assert owners == {(1000, 1000)}  # the bind shows what went in: the agent's
    kept = tmp_path / "kept.txt"
    kept.write_text("mine\n")
    os.chown(kept, 1234, 4321)
    assert run_cai(home, "cp", "-a", str(kept), f"{name}:kept.txt").returncode == 0
    assert ((workspace / "kept.txt").stat().st_uid, (workspace / "kept.txt").stat().st_gid) == (1234, 4321)
    refused = run_cai(home, "cp", "-", f"{name}:")
    assert refused.returncode == 1 and "running container only" in refused.stderr
    inside = run_cai(home, "cp", str(source), f"{name}:inbox")  # inbox exists: the copy is a new inbox/tree
    assert inside.returncode == 0, inside.stderr
    again = run_cai(home, "cp", str(source), f"{name}:inbox")  # inbox/tree now exists, the agent's maybe: not as root
    assert again.returncode == 1 and "exists, and" in again.stderr, again.stderr


def test_a_link_planted_before_the_stop_is_refused_as_root(stopped_box, tmp_path):
    home, workspace, name, container = stopped_box
    assert sh(container, "ln -sfn /etc ~/workspace/drop")[0] == 0
    (tmp_path / "passwd").write_text("owned\n")
    assert sh(container, "mkdir -p ~/workspace/tree && ln -sfn /etc ~/workspace/tree/etc")[0] == 0
    container.stop(timeout=1)
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "passwd").write_text("owned\n")
    into_tree = run_cai(home, "cp", str(tree), f"{name}:")  # would be tree/etc/passwd through the agent's link
    assert into_tree.returncode == 1 and "exists, and" in into_tree.stderr, into_tree.stderr
    for dest in (f"{name}:drop/passwd", f"{name}:drop", f"{name}:tree/etc"):
        done = run_cai(home, "cp", str(tmp_path / "passwd"), dest)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"[ERROR] Refused: {name}:/home/agent/workspace/") and "is a link (to /etc)" \
            in done.stderr, done.stderr
    container.start()
    assert sh(container, "head -c 5 /etc/passwd")[1] == "root:"


def test_minus_a_into_a_running_container_is_refused(box, tmp_path):
    home, workspace, _, _ = box
    (tmp_path / "f").write_text("x")
    done = run_cai(home, "cp", "-a", str(tmp_path / "f"), ":f", cwd=str(workspace))
    assert done.returncode == 1 and done.stderr.startswith("[ERROR] -a needs a stopped container"), done.stderr


def _listing(docker_client, container, path):
    """Every entry below `path` in a (stopped) container, read through the engine."""
    stream, _ = docker_client.api.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return sorted(member.name for member in tar)


# `tools` is a directory and a link to /usr/local in turn, swapped atomically (renameat2's
# RENAME_EXCHANGE), so every look finds one of the two and never a gap.
_FLIPPER = """
import ctypes, os
os.chdir("/mnt/agent-data")
os.makedirs("tools", exist_ok=True)
os.path.lexists("flip") or os.symlink("/usr/local", "flip")
libc = ctypes.CDLL(None, use_errno=True)
while True:
    libc.renameat2(-100, b"tools", -100, b"flip", 2)
"""


def test_a_neighbour_racing_a_stopped_copy_into_the_shared_volume_reaches_nothing_of_roots(
        tmp_path_factory, docker_client, agent_image, make_container, tmp_path):
    """Issue 24 §3: B is stopped; N, running on B's data volume, flips `tools` between a directory
    and a link to /usr/local while `cai cp ./bin B:/mnt/agent-data/tools/` runs. The copy may land
    in the volume or fail, but B's /usr/local never changes."""
    from conftest import RUN_ID, RUN_LABEL

    volume = docker_client.volumes.create(f"cai-race-{RUN_ID}", labels={RUN_LABEL: RUN_ID}).name
    home = tmp_path_factory.mktemp("race-home")
    workspace = agent_workspace(tmp_path_factory, "race-ws")
    made = run_cai(home, "run", "--no-agent", "--data-volume", volume, str(workspace))
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip()
    try:
        victim = docker_client.containers.get(name)
        victim.stop(timeout=1)
        before = _listing(docker_client, name, "/usr/local")
        make_container(user="1000:1000", volumes={volume: {"bind": "/mnt/agent-data", "mode": "rw"}},
                       entrypoint=["python3", "-c", _FLIPPER])
        (tmp_path / "owned.txt").write_text("mine\n")
        keep = run_cai(home, "cp", "-a", str(tmp_path / "owned.txt"), f"{name}:/mnt/agent-data/owned.txt")
        assert keep.returncode == 1 and "could plant a link for root to write through" in keep.stderr, keep.stderr
        source = tmp_path / "bin"
        source.mkdir()
        for index in range(300):
            (source / f"tool-{index}").write_text(f"#!/bin/sh\necho {index}\n")
        codes = []
        for _ in range(16):
            done = run_cai(home, "cp", str(source), f"{name}:/mnt/agent-data/tools/")
            codes.append(done.returncode)
            assert done.returncode in (0, 1), done.stderr
            assert "Traceback" not in done.stderr
        assert _listing(docker_client, name, "/usr/local") == before, codes
        victim.reload()
        assert victim.status == "exited"
    finally:
        docker_client.api.remove_container(name, force=True)


def test_a_stopped_copy_into_the_data_volume_belongs_to_the_agent(stopped_box, tmp_path, docker_client):
    """Through the helper: a new tree in the volume, the agent's, readable by the container once it starts."""
    from conftest import unique

    home, workspace, name, container = stopped_box
    container.stop(timeout=1)
    source = tmp_path / "tree"
    make_tree(source)
    target = f"/mnt/agent-data/{unique('cp-tree')}"  # the default volume outlives test runs
    try:
        done = run_cai(home, "cp", str(source), f"{name}:{target}")
        assert done.returncode == 0, done.stderr
        inside = run_cai(home, "cp", str(source), f"{name}:{target}")  # a new …/tree inside it
        assert inside.returncode == 0, inside.stderr
        again = run_cai(home, "cp", str(source), f"{name}:{target}")
        assert again.returncode == 1 and "exists, and" in again.stderr, again.stderr
        container.start()
        code, listing = sh(container, f"cd {target} && stat -c '%u:%g %a %F %n' run.sh link hard empty "
                                      f"&& cat 'with space'/* && readlink link")
        assert code == 0, listing
        assert listing.splitlines()[:4] == ["1000:1000 755 regular file run.sh", "1000:1000 777 symbolic link link",
                                            "1000:1000 755 regular file hard", "1000:1000 755 directory empty"]
        assert listing.splitlines()[4:] == ["accents", "run.sh"]
        assert not docker_client.containers.list(all=True, filters={"label": "containai.helper.role=cp"})
    finally:
        container.start()
        sh(container, f"rm -rf {target}")


def test_a_link_the_agent_planted_in_the_workspace_is_never_followed_on_this_host(box, tmp_path):
    """The workspace is a directory of this host the agent writes: `deploy -> /etc/cron.d` and
    `notes.txt -> ~/.ssh/id_ed25519` wait there for the user to name them (issue 24 review)."""
    home, workspace, _, container = box
    cron = tmp_path / "cron.d"
    cron.mkdir()
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY\n")
    keys = tmp_path / "ssh-dir"
    keys.mkdir()
    (keys / "id_rsa").write_text("PRIVATE KEY\n")
    assert sh(container, f"mkdir -p ~/workspace/out && echo '* * * * * root touch /pwned' > ~/workspace/out/deploy "
                         f"&& ln -sfn {cron} ~/workspace/deploy && ln -sfn {cron} ~/workspace/build "
                         f"&& ln -sfn {secret} ~/workspace/notes.txt && ln -sfn {keys} ~/workspace/docs")[0] == 0
    try:
        for argv in ((":out/deploy", "./deploy"), (":out/deploy", "./build/"), (":out", "./build/sub")):
            done = run_cai(home, "cp", *argv, cwd=str(workspace))
            assert done.returncode == 1, (argv, done.stderr)
            assert done.stderr.startswith("[ERROR] Refused: ") and "is a symbolic link (to " in done.stderr, done.stderr
        assert list(cron.iterdir()) == []
        for local in ("./notes.txt", "./docs", "docs/id_rsa"):
            done = run_cai(home, "cp", local, ":/tmp/", cwd=str(workspace))
            assert done.returncode == 1 and "is a symbolic link (to " in done.stderr, (local, done.stderr)
        assert "PRIVATE" not in sh(container, "cat /tmp/notes.txt /tmp/docs/id_rsa /tmp/id_rsa 2>/dev/null; true")[1]
    finally:
        sh(container, "rm -rf ~/workspace/out ~/workspace/deploy ~/workspace/build ~/workspace/notes.txt ~/workspace/docs")
