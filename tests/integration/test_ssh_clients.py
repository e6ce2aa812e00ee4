"""The user's other SSH tools against a real container, through `ssh NAME` (NAME.conf, reached by
an Include as ~/.ssh/config has it) and through `cai ssh-config`: paramiko, rsync, scp, sftp, git
and ansible; then rsync and git through an `ssh://` engine's jump. Each exit code is checked and
every byte compared.

ssh finds `~` in the password database, not $HOME, so each test names its config with `-F`: a file
holding the Include line cai writes, with the path spelled out."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import paramiko
import pytest

from conftest import AGENT_IMAGE, agent_workspace, run_cai

SSH = "/usr/bin/ssh"
TIMEOUT = 120

# Prints a manifest of the tree under argv[1], the same here and in the container: every name as
# its bytes (hex), the type, a file's sha256 and mode, a link's target, and the names that share
# a file's inode (hard links).
MANIFEST = r"""
import hashlib, json, os, stat, sys
top = os.fsencode(sys.argv[1])
entries, by_inode = {}, {}
for root, dirs, files in os.walk(top):
    for name in dirs + files:
        path = os.path.join(root, name)
        rel = os.path.relpath(path, top).hex()
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            entries[rel] = ["link", os.readlink(path).hex()]
        elif stat.S_ISDIR(info.st_mode):
            entries[rel] = ["dir", oct(stat.S_IMODE(info.st_mode))]
        else:
            with open(path, "rb") as fh:
                entries[rel] = ["file", hashlib.sha256(fh.read()).hexdigest(), oct(stat.S_IMODE(info.st_mode))]
            by_inode.setdefault((info.st_dev, info.st_ino), []).append(rel)
for names in by_inode.values():
    for rel in names:
        entries[rel].append(sorted(names))
print(json.dumps(entries, sort_keys=True))
"""


def make_tree(top: Path) -> None:
    """Names with spaces, a newline, a leading dash, é composed and decomposed side by side, a
    relative symlink, a hard link, an empty file and binary data."""
    spaced = top / "dir with space"
    spaced.mkdir(parents=True)
    (spaced / "file with space.txt").write_bytes(b"spaces in the path\n")
    (top / "new\nline").write_bytes(b"a newline in the name\n")
    (top / "-dash").write_bytes(b"a leading dash\n")
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert os.fsencode(nfc) != os.fsencode(nfd)
    (top / nfc).write_bytes(b"composed\n")
    (top / nfd).write_bytes(b"decomposed\n")
    (top / "binary.bin").write_bytes(os.urandom(300_000) + bytes(range(256)))
    (top / "empty").write_bytes(b"")
    os.symlink("dir with space/file with space.txt", top / "link to file")
    os.link(top / "binary.bin", spaced / "hard link")


def local_manifest(top: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", MANIFEST, str(top)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Client:
    """Plain OpenSSH tools for one container, through one ssh config file."""

    def __init__(self, name: str, config: Path, home: Path) -> None:
        self.name, self.config, self.home = name, config, home

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "GIT_SSH_COMMAND": f"{SSH} -F {self.config}",
                "GIT_CONFIG_NOSYSTEM": "1"}

    def run(self, *argv: str, input: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, input=input, cwd=cwd, env=self.env, timeout=TIMEOUT,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ssh(self, command: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return self.run(SSH, "-F", str(self.config), self.name, command, input=input)

    def remote_manifest(self, path: str) -> dict:
        done = self.ssh(f"python3 - {path}", input=MANIFEST.encode())
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def rsync(self, *argv: str) -> subprocess.CompletedProcess:
        return self.run("rsync", "-aH", "-e", f"{SSH} -F {self.config}", *argv)


def include_config(home: Path, extra: str = "") -> Path:
    """What ~/.ssh/config holds after `cai run`: the Include (here with the path spelled out), and
    the user's own entries after it."""
    path = home / "client-ssh-config"
    path.write_text(f"Include {home / '.ssh' / 'containai.d'}/*.conf\n{extra}")
    return path


def check_rsync_round_trip(client: Client, tmp: Path) -> None:
    source, back = tmp / "source", tmp / "back"
    make_tree(source)
    sent = local_manifest(source)
    assert len(sent) == 10
    there = client.rsync(f"{source}/", f"{client.name}:incoming/")
    assert there.returncode == 0, there.stderr
    assert client.remote_manifest("incoming") == sent
    returned = client.rsync(f"{client.name}:incoming/", f"{back}/")
    assert returned.returncode == 0, returned.stderr
    assert local_manifest(back) == sent


def check_git_round_trip(client: Client, tmp: Path) -> None:
    """A repository made in the container's workspace, cloned here as `NAME:workspace`, and a
    commit pushed back over `ssh NAME` (to a branch: the workspace has main checked out)."""
    made = client.ssh("cd workspace && git init -q -b main && printf 'made in the container\\n' > made.txt && "
                      "git add made.txt && git -c user.name=Agent -c user.email=agent@example.invalid "
                      "commit -q -m 'made there' && git rev-parse HEAD")
    assert made.returncode == 0, made.stderr
    clone = tmp / "clone"
    cloned = client.run("git", "clone", "-q", f"{client.name}:workspace", str(clone))
    assert cloned.returncode == 0, cloned.stderr
    assert (clone / "made.txt").read_bytes() == b"made in the container\n"
    head = client.run("git", "-C", str(clone), "rev-parse", "HEAD")
    assert head.stdout == made.stdout
    payload = os.urandom(100_000)
    (clone / "from host.bin").write_bytes(payload)
    for argv in (["add", "from host.bin"],
                 ["-c", "user.name=Me", "-c", "user.email=me@example.invalid", "commit", "-q", "-m", "made here"]):
        step = client.run("git", "-C", str(clone), *argv)
        assert step.returncode == 0, step.stderr
    pushed = client.run("git", "-C", str(clone), "push", "-q", "origin", "HEAD:refs/heads/from-host")
    assert pushed.returncode == 0, pushed.stderr
    mine = client.run("git", "-C", str(clone), "rev-parse", "HEAD").stdout.strip()
    arrived = client.ssh("git -C workspace rev-parse refs/heads/from-host")
    assert (arrived.returncode, arrived.stdout.decode().strip()) == (0, mine.decode())
    content = client.ssh("git -C workspace cat-file blob 'from-host:from host.bin'")
    assert (content.returncode, content.stdout) == (0, payload)


# --- a local engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box(tmp_path_factory, docker_client, agent_image):
    """A workspace container made by `cai run` from the image under test, owned (as a user's
    checkout is) by the agent's uid: git refuses a repository whose top another user owns."""
    home = tmp_path_factory.mktemp("clients-home")
    workspace = agent_workspace(tmp_path_factory, "clients-ws")
    os.chown(workspace, 1000, 1000)
    done = run_cai(home, "run", "--no-agent", "--image", AGENT_IMAGE, str(workspace))
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    yield Client(name, include_config(home), home), workspace
    docker_client.api.remove_container(name, force=True, v=True)


def ssh_config_of(home: Path, *argv: str, cwd: Path | None = None, env: dict | None = None) -> str:
    done = run_cai(home, "ssh-config", *argv, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ssh_config_is_the_same_block_by_name_by_workspace_and_with_all(box):
    client, workspace = box
    by_name = ssh_config_of(client.home, client.name)
    assert by_name.startswith(f"Host {client.name}\n") and "Include" not in by_name
    assert ssh_config_of(client.home, cwd=workspace) == by_name
    assert ssh_config_of(client.home, "-w", str(workspace)) == by_name
    assert f"Host {client.name}\n" in ssh_config_of(client.home, "--all")
    conf = (client.home / ".ssh" / "containai.d" / f"{client.name}.conf").read_text()
    assert by_name == "".join(line + "\n" for line in conf.splitlines() if not line.startswith("#"))


def test_ssh_config_of_a_missing_container_is_10(box):
    client, _ = box
    done = run_cai(client.home, "ssh-config", "no-such-container-here", "--json")
    assert done.returncode == 10
    assert json.loads(done.stdout)["error"]["kind"] == "container_not_found"


def test_paramiko_connects_with_what_ssh_config_says(box):
    client, _ = box
    host = paramiko.SSHConfig.from_text(ssh_config_of(client.home, client.name)).lookup(client.name)
    hostname, port = host["hostname"], int(host["port"])
    # paramiko has no HostKeyAlias: the pinned keys are looked up under the alias the block names.
    pinned = paramiko.HostKeys(host["userknownhostsfile"]).lookup(host["hostkeyalias"])
    assert pinned
    ssh_client = paramiko.SSHClient()
    for kind, key in pinned.items():
        ssh_client.get_host_keys().add(f"[{hostname}]:{port}", kind, key)
    ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        ssh_client.connect(hostname, port=port, username=host["user"], key_filename=host["identityfile"],
                           look_for_keys=False, allow_agent=False, timeout=30)
        _, stdout, stderr = ssh_client.exec_command("printf 'out\\000\\377'; printf 'err' >&2; exit 7", timeout=60)
        out, err = stdout.read(), stderr.read()
        assert (out, err, stdout.channel.recv_exit_status()) == (b"out\x00\xff", b"err", 7)
    finally:
        ssh_client.close()


def test_paramiko_refuses_a_server_whose_key_is_not_pinned(box):
    client, _ = box
    host = paramiko.SSHConfig.from_text(ssh_config_of(client.home, client.name)).lookup(client.name)
    ssh_client = paramiko.SSHClient()
    ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())  # nothing pinned under [127.0.0.1]:PORT
    with pytest.raises(paramiko.SSHException):
        ssh_client.connect(host["hostname"], port=int(host["port"]), username=host["user"],
                           key_filename=host["identityfile"], look_for_keys=False, allow_agent=False, timeout=30)
    ssh_client.close()


def test_rsync_to_and_from_name(box, tmp_path):
    client, _ = box
    check_rsync_round_trip(client, tmp_path)


def test_rsync_through_the_ssh_config_output_alone(box, tmp_path):
    client, _ = box
    alone = tmp_path / "from-ssh-config"
    alone.write_text(ssh_config_of(client.home, client.name))
    check_rsync_round_trip(Client(client.name, alone, client.home), tmp_path)


def test_scp_to_and_from_name(box, tmp_path):
    client, _ = box
    make_tree(tmp_path / "t")
    for local, remote in ((tmp_path / "t" / "binary.bin", "scp copy.bin"),
                          (tmp_path / "t" / "dir with space" / "file with space.txt", "scp-spaced.txt")):
        there = client.run("scp", "-q", "-F", str(client.config), str(local), f"{client.name}:{remote}")
        assert there.returncode == 0, there.stderr
        back = tmp_path / f"back-{remote}"
        returned = client.run("scp", "-q", "-F", str(client.config), f"{client.name}:{remote}", str(back))
        assert returned.returncode == 0, returned.stderr
        assert back.read_bytes() == local.read_bytes()
    missing = client.run("scp", "-q", "-F", str(client.config), f"{client.name}:no-such-file", str(tmp_path / "x"))
    assert missing.returncode == 1


def test_sftp_batch_to_and_from_name(box, tmp_path):
    client, _ = box
    payload = os.urandom(200_000)
    (tmp_path / "up load.bin").write_bytes(payload)
    batch = tmp_path / "batch"
    batch.write_text(f'mkdir "sftp dir"\nput "{tmp_path}/up load.bin" "sftp dir/up load.bin"\n'
                     f'rename "sftp dir/up load.bin" "sftp dir/renamed.bin"\n'
                     f'get "sftp dir/renamed.bin" "{tmp_path}/down.bin"\n')
    done = client.run("sftp", "-q", "-F", str(client.config), "-b", str(batch), client.name)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "down.bin").read_bytes() == payload
    there = client.ssh("cat 'sftp dir/renamed.bin'")
    assert (there.returncode, there.stdout) == (0, payload)
    failing = tmp_path / "failing"
    failing.write_text("get no-such-file\n")
    assert client.run("sftp", "-q", "-F", str(client.config), "-b", str(failing), client.name).returncode == 1


def test_git_clone_and_push_over_ssh_name(box, tmp_path):
    client, _ = box
    check_git_round_trip(client, tmp_path)


def test_ansible_through_ssh_name(box, tmp_path):
    """Ansible's ssh connection runs the system ssh with the user's config: `ssh NAME` is enough."""
    client, _ = box
    ansible = Path(sys.executable).with_name("ansible")
    assert ansible.exists(), "ansible-core is a test dependency: pip install -e '.[test]'"
    env = {"ANSIBLE_SSH_COMMON_ARGS": f"-F {client.config}", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
           "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONTROL_PATH_DIR": str(tmp_path / "cp")}

    def ansible_run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ansible), "all", "-i", f"{client.name},", *argv], capture_output=True, text=True,
                              env={**client.env, **env}, timeout=TIMEOUT, stdin=subprocess.DEVNULL)

    pinged = ansible_run("-m", "ansible.builtin.ping")
    assert pinged.returncode == 0 and '"ping": "pong"' in pinged.stdout, pinged.stdout + pinged.stderr
    payload = os.urandom(50_000)
    (tmp_path / "payload.bin").write_bytes(payload)
    copied = ansible_run("-m", "ansible.builtin.copy", "-a", f"src={tmp_path / 'payload.bin'} dest=/home/agent/ansible.bin")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    there = client.ssh("cat ansible.bin")
    assert (there.returncode, there.stdout) == (0, payload)
    failed = ansible_run("-m", "ansible.builtin.command", "-a", "false")
    assert failed.returncode == 2, failed.stdout


# --- an ssh:// engine -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote_box(remote_host, tmp_path_factory):
    home = tmp_path_factory.mktemp("clients-remote-home")
    context = remote_host.add_context(home)
    workspace = agent_workspace(tmp_path_factory, "clients-remote-ws")
    env = remote_host.env(home)
    done = run_cai(home, "--context", context, "run", "--no-agent", "--image", AGENT_IMAGE, str(workspace), env=env)
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    # The user's config: the Include, then their own entry for the engine host (the jump's hop).
    yield Client(name, include_config(home, remote_host.ssh_config_block()), home), context, env
    remote_host.reset()


def test_rsync_through_an_ssh_engine(remote_box, remote_host, tmp_path):
    client, _, _ = remote_box
    assert f"ProxyJump root@{remote_host.address}" in (client.home / ".ssh" / "containai.d" / f"{client.name}.conf").read_text()
    check_rsync_round_trip(client, tmp_path)


def test_git_through_an_ssh_engine(remote_box, tmp_path):
    client, _, _ = remote_box
    check_git_round_trip(client, tmp_path)


def test_ssh_config_of_an_ssh_engine_carries_the_jump(remote_box, remote_host, tmp_path):
    """The printed block, with only the user's own entry for the engine host beside it."""
    client, context, env = remote_box
    done = run_cai(client.home, "--context", context, "ssh-config", client.name, "--json", env=env)
    assert done.returncode == 0, done.stderr
    host = json.loads(done.stdout)["hosts"][0]
    assert (host["proxy_jump"], host["context"]) == (f"root@{remote_host.address}", context)
    alone = tmp_path / "from-ssh-config"
    alone.write_text(host["config"] + "\n" + remote_host.ssh_config_block())
    payload = os.urandom(10_000)
    done = Client(client.name, alone, client.home).ssh("cat > through-jump.bin && sha256sum through-jump.bin",
                                                       input=payload)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()
