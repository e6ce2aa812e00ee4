"""Every command line of README's "Use" blocks, run against a real container of its own and
checked for the exit code README promises. A README line that this table does not know fails the
first test, so a new example cannot go unchecked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


from conftest import RUN_ID, RUN_LABEL, agent_workspace, run_cai

README = Path(__file__).resolve().parents[2] / "README.md"

# README line (the command, without its comment) -> why it is not run here. Everything else runs.
NOT_RUN = {
    "cd ~/src/project": "the test works in its own workspace",
    "cai attach train": "needs a terminal: test_agent_sessions drives attach in tmux",
    "cai stop --all": "stops every cai container of the engine the suite shares: test_hardening runs it on a spare engine",
    "cai image build --base cai-base:bookworm-XXXXXXXX": "scripts/setup.sh runs it before the suite",
    "cai exec -u root -- apt-get install -y jq": "needs the network: `cai exec -u root -- id -u` stands in below",
}


def readme_lines() -> list[str]:
    use = README.read_text().split("\n## Use\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", use, re.DOTALL):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                lines.append(command)
    return lines


def test_every_readme_line_is_run_or_says_why_not():
    run_here = {line for line, _ in STEPS}
    assert [line for line in readme_lines() if line not in run_here and line not in NOT_RUN] == []
    assert [line for line in list(run_here) + list(NOT_RUN) if line not in readme_lines()] == []


# (README line, expected exit code). Order matters: they share one container.
STEPS = [
    ("cai run", 0),
    ("cai run --no-agent", 0),
    ("cai exec -- ls -la", 0),
    ("cai shell", 0),
    ("cai session new --log train -- python3 train.py", 0),
    ("cai session ls -a", 0),
    ("cai session logs -f train", 0),
    ("cai session wait train", 0),
    ("cai run -d -- python3 train.py", 0),
    ("cai cp ./data :inputs", 0),
    ("cai status", 0),
    ("cai status --all-contexts", 0),
    ("cai ps -a --format json", 0),
    ("cai port", 0),
    ("cai inspect --format '{{.cai.pins}} {{json .cai.sessions}}'", 0),
    ("cai top -- -o pid,comm", 0),
    ("cai pause / cai unpause", 0),
    ("cai exec -u root -- apt-get install -y jq", 0),
    ("cai run --label team=ml -e MODEL=small --restart unless-stopped", 0),
    ("ssh project-main", 0),
    ("cai ssh-config > hosts", 0),
    ("cai logs -f --since 10m", 0),
    ("cai wait && echo ok", 0),
    ("cai restart", 0),
    ("cai kill -s TERM", 0),
    ("cai stop", 0),
    ("cai cp proj-main:results ./results", 0),
    ("cai rename new-name", 0),
    ("cai stop --export", 0),
    ("cai export -o backup.tgz", 0),
    ("cai import --from backup.tgz --data-volume new-vol", 0),
    ("cai gc --dry-run", 0),
    ("cai gc --force --json", 0),
    ("cai gc --all-contexts --dry-run", 0),
    ("cai doctor", 0),
    ("cai doctor --json", 0),
    ("cai ssh cleanup", 0),
    ("cai docker ps", 0),
    ("cai --help", 0),
    ("cai stop --remove", 0),
]
STEPS = [(line, code) for line, code in STEPS if line not in NOT_RUN] + [
    ("cai exec -u root -- apt-get install -y jq", 0)]  # its stand-in, see NOT_RUN


class Workspace:
    def __init__(self, home: Path, path: Path, volume: str, spare_volume: str, docker_client) -> None:
        self.home, self.path, self.volume, self.spare_volume, self.docker = home, path, volume, spare_volume, docker_client
        self.name = ""

    def env(self) -> dict:
        return {"CONTAINAI_DATA_VOLUME": self.volume}

    def cai(self, *argv: str, **kwargs):
        return run_cai(self.home, *argv, cwd=str(self.path), env=self.env(), **kwargs)

    def shell(self, line: str, **kwargs):
        """A line as README writes it, in bash, with `cai` this checkout's."""
        bin_dir = self.home / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "cai").write_text(f"#!/bin/sh\nexec {sys.executable} -m cai \"$@\"\n")
        (bin_dir / "cai").chmod(0o755)
        env = {**os.environ, "HOME": str(self.home), "DOCKER_CONFIG": str(self.home / ".docker"),
               "PATH": f"{bin_dir}:{os.environ['PATH']}", **self.env()}
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=str(self.path), env=env,
                              stdin=subprocess.DEVNULL, timeout=kwargs.pop("timeout", 120), **kwargs)


def run_step(ws: Workspace, line: str):
    """Run one README line the way a user would, with the names this test's container has."""
    if line == "cai run":  # the agent is a stand-in the user config defines: the suite's image has none
        done = ws.cai("run")
        assert done.stdout.strip() == "claude", done.stderr  # no terminal: the agent session's name
        names = ws.cai("ps", "-q", "--filter", f"workspace={ws.path}")
        ws.name = names.stdout.strip()
        return done
    if line == "cai run --no-agent":
        done = ws.cai("run", "--no-agent")
        assert done.stdout.strip() == ws.name
        return done
    if line == "cai shell":
        return run_cai(ws.home, "shell", cwd=str(ws.path), env=ws.env(), input="echo in-the-shell; exit\n")
    if line == "ssh project-main":
        # ssh finds ~ in the password database, not $HOME: name the file that the Include line reaches
        conf = ws.home / ".ssh" / "containai.d" / f"{ws.name}.conf"
        return subprocess.run(["ssh", "-F", str(conf), ws.name, "true"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    if line == "cai ssh-config > hosts":
        done = ws.shell(line)
        assert done.returncode == 0, done.stderr
        # the printed block alone, with no Include, reaches the container
        return subprocess.run(["ssh", "-F", str(ws.path / "hosts"), ws.name, "true"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    if line in ("cai logs -f --since 10m", "cai wait && echo ok"):
        follower = subprocess.Popen(["bash", "-c", line], cwd=str(ws.path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env={**os.environ, "HOME": str(ws.home), "DOCKER_CONFIG": str(ws.home / ".docker"),
                                                    "PATH": f"{ws.home / 'bin'}:{os.environ['PATH']}", **ws.env()})
        time.sleep(2)
        assert follower.poll() is None, "it should follow the running container"
        assert ws.cai("stop", "--force").returncode == 0
        out, err = follower.communicate(timeout=60)
        assert ws.cai("run", "--no-agent").returncode == 0
        return subprocess.CompletedProcess(line, follower.returncode, out, err)
    if line == "cai exec -u root -- apt-get install -y jq":
        return ws.cai("exec", "-u", "root", "--", "id", "-u")
    if line == "cai cp proj-main:results ./results":
        ws.docker.containers.get(ws.name).put_archive("/home/agent/workspace", _tar_dir("results"))
        return ws.shell(line.replace("proj-main", ws.name))
    if line == "cai rename new-name":
        new = f"readme-{RUN_ID}"
        done = ws.shell(line.replace("new-name", new))
        ws.name = new
        return done
    if line == "cai stop --export":
        done = ws.shell(line)
        assert list(ws.path.glob("containai-export-*.tgz")), done.stderr
        return done
    if line == "cai import --from backup.tgz --data-volume new-vol":
        return ws.shell(line.replace("new-vol", ws.spare_volume))
    if line == "cai pause / cai unpause":
        return ws.shell("cai pause && cai unpause")
    return ws.shell(line)


def _tar_dir(name: str) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
        tar.addfile(info)
        data = b"a result\n"
        info = tarfile.TarInfo(f"{name}/report.txt")
        info.size, info.uid, info.gid = len(data), 1000, 1000
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_readme_use_lines_exit_as_documented(tmp_path_factory, docker_client, agent_image):
    volume = docker_client.volumes.create(f"cai-readme-{RUN_ID}", labels={RUN_LABEL: RUN_ID}).name
    spare = docker_client.volumes.create(f"cai-readme-new-{RUN_ID}", labels={RUN_LABEL: RUN_ID}).name
    path = agent_workspace(tmp_path_factory, "readme-ws")
    (path / "train.py").write_text("print('epoch 1 done')\n")
    (path / "data").mkdir()
    (path / "data" / "input.csv").write_text("a,b\n1,2\n")
    ws = Workspace(tmp_path_factory.mktemp("readme-home"), path, volume, spare, docker_client)
    user_config = ws.home / ".config" / "containai" / "config.toml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text('[agent.claude]\ncommand = ["bash", "-c", "echo agent-ready; exec sleep 3600"]\nargs = []\n')
    try:
        for line, code in STEPS:
            done = run_step(ws, line)
            assert done.returncode == code, (line, done.stdout[-2000:], done.stderr[-2000:])
            assert "Traceback" not in done.stderr, line
            if line == "cai session new --log train -- python3 train.py":
                assert done.stdout == "train\n"
            if line == "cai session logs -f train":
                assert "epoch 1 done" in done.stdout
            if line == "cai gc --force --json":
                assert json.loads(done.stdout)["schema_version"] == 1
            if line == "cai wait && echo ok":
                assert done.stdout.strip().endswith("ok")
        assert (path / "results" / "report.txt").read_text() == "a result\n"
    finally:
        if ws.name:
            subprocess.run(["docker", "rm", "-f", ws.name], capture_output=True, timeout=60)
