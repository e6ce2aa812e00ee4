"""Every benchmark, side by side with the raw tool that does the same job, measured in this run on
this machine; writes docs/benchmarks.md and its scaling chart.

    python bench/run.py [--runs N] [--sizes 50,200,500,1000] [--output docs/benchmarks.md]

cai is measured as a user has it: this checkout installed into a fresh, non-editable venv of the
bench's own, bytecode compiled; Python baselines run that venv's interpreter. Each measure runs cai
and its baseline interleaved pair by pair (A B A B ...) after one dropped warm-up pair, and reports
min / median / max of each side and the median of the per-pair ratios. It is a report, not a test:
nothing here fails on a time.

Fixtures, all built (and left to settle) before anything is timed, all removed at the end: a
temporary HOME with one workspace container made by `cai run`; a second host with its own sshd and
dockerd (tests/integration/remote_host.py) reached as ssh:// and as tcp:// with TLS; a spare dockerd
of the bench's own (tests/integration/spare_engine.py) grown batch by batch to each --sizes count of
exited cai containers, so the shared engine's containers are never touched. matplotlib (the `bench`
extra) draws the chart; without it the report says so instead.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]  # the checkout's cai, the tests' fixtures

from cai import ssh  # noqa: E402
from remote_host import RemoteHost, cleanup_leftovers  # noqa: E402
from spare_engine import SpareEngine  # noqa: E402

SPARE_INDEX = 9
SCALING_TARGETS_MS = {200: 500.0, 1000: 2000.0}
SETTLE_S = 2.0
# Variables that would point cai or ssh at the user's own state instead of the bench's HOME.
PRIVATE_VARS = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "CAI_SSH_MULTIPLEX",
                "CONTAINAI_SECURE_ENGINE_CONTEXT", "DOCKER_HOST", "DOCKER_CONTEXT")
BASH_PROBE = r"""
source "$1"
_cai_bench_empty() { COMPREPLY=(); }
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); "$FN"; }
"""
Sample = Callable[[], float]  # one timed run, in milliseconds


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    kind: str | None = None  # what it judges: "ratio", "ms" (cai's median), "forks" or "warnings"; None: for reference
    limit: float = 0.0

    def measured(self, row: "Row") -> float | None:
        if self.kind == "ratio":
            return row.ratio
        if self.kind == "ms":
            return row.median
        if self.kind == "warnings":
            return row.warnings
        return row.forks if self.kind == "forks" else None

    def met(self, row: "Row") -> bool | None:
        value = self.measured(row)
        return None if value is None else value <= self.limit

    def shown(self, row: "Row") -> str:
        value = self.measured(row)
        if self.kind == "ratio":
            return f"{value:.2f}×"
        if self.kind == "warnings":
            return f"{value} `[WARN]` lines"
        return f"{value:.0f} ms" if self.kind == "ms" else f"{value} processes per call"


REFERENCE = Target("(for reference)")
NO_FORK = Target("no fork", "forks", 0)
NO_WARNING = Target("no `[WARN]`, no retry", "warnings", 0)


def ratio_at_most(limit: float) -> Target:
    return Target(f"≤ {limit:g}×", "ratio", limit)


def ms_at_most(limit: float) -> Target:
    return Target(f"≤ {limit:g} ms" if limit < 1000 else f"≤ {limit / 1000:g} s", "ms", limit)


@dataclass
class Row:
    key: str
    what: str
    baseline_what: str
    ours: list[float]
    theirs: list[float]
    target: Target
    note: str = ""
    forks: int | None = None
    warnings: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.ours)

    @property
    def ratio(self) -> float:
        """Median of the per-pair ratios: a pair shares the machine's state of that moment."""
        return statistics.median(o / t if t else float("inf") for o, t in zip(self.ours, self.theirs))


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed * 1000


def paired(ours: Sample, theirs: Sample, runs: int) -> tuple[list[float], list[float]]:
    """A B A B ...: both sides see the same drift of the machine. The first pair warms caches and is dropped."""
    ours(), theirs()
    samples = [(ours(), theirs()) for _ in range(runs)]
    return [a for a, _ in samples], [b for _, b in samples]


def measure(key: str, what: str, ours: Sample, baseline_what: str, theirs: Sample, target: Target, runs: int,
            **extra) -> Row:
    row = Row(key, what, baseline_what, *paired(ours, theirs, runs), target, **extra)
    print(f"{key:4} {row.median:8.1f} ms  {row.ratio:6.2f}×  {what}", file=sys.stderr, flush=True)
    return row


def run_checked(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return done.stdout


def clone_calls(argv: list[str], env: dict[str, str]) -> tuple[int, int] | None:
    """(clone/fork calls, processes among them) one run of `argv` makes, counted by strace (None
    without it); the rest are threads. A call interrupted by another traced one prints a second,
    "resumed", line."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile(mode="r") as trace:
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", trace.name, *argv],
                       env=env, capture_output=True, check=True, timeout=600)
        calls = [line for line in trace if "resumed>" not in line]
    return len(calls), sum(1 for line in calls if "CLONE_THREAD" not in line)


# --- fixtures --------------------------------------------------------------------------------


def cai_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), **extra}
    for var in PRIVATE_VARS:
        env.pop(var, None)
    return env


def install(tmp: Path) -> tuple[str, str]:
    """(cai, python) of a fresh venv with this checkout installed as a user installs it: not
    editable, bytecode compiled. pip builds from a copy: it builds in its source tree, and a stale
    build/lib in the checkout would go into the wheel."""
    source, venv = tmp / "source", tmp / "venv"
    listed = run_checked(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for relative in filter(None, listed.split("\0")):
        if (REPO / relative).is_file():  # a tracked file deleted in the checkout is not part of it
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, source / relative)
    run_checked([sys.executable, "-m", "venv", str(venv)])
    run_checked([str(venv / "bin" / "pip"), "install", "-q", str(source)])
    run_checked([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")])
    return str(venv / "bin" / "cai"), str(venv / "bin" / "python")


class Workspace:
    """One container made by `cai run`, and the ways to reach it: cai's exec, cai's shared
    connection (its control socket, named by cai's own code), and raw ssh."""

    def __init__(self, stack: contextlib.ExitStack, cai: str, env: dict[str, str], home: Path, directory: Path,
                 context: str | None = None, jump: str | None = None, image: str | None = None) -> None:
        self.env, self.home, self.directory, self.context, self.jump = env, home, directory, context, jump
        self.cai = [cai, *(["--context", context] if context else [])]
        self.image = ["--image", image] if image else []
        directory.mkdir()
        directory.chmod(0o777)
        self.name = run_checked([*self.cai, "run", "--no-agent", *self.image, str(directory)], env).strip()
        self.docker = ["docker", "--context", context or "default"]
        stack.callback(subprocess.run, [*self.docker, "rm", "-f", self.name], env=env, capture_output=True)
        self.find_endpoint()
        stack.callback(lambda: self.close_master())  # runs before the removal above, on the latest socket
        self.exec_true = [*self.cai, "exec", "--container", self.name, "--", "true"]

    def find_endpoint(self) -> None:
        port, container_id = run_checked([*self.docker, "inspect", "--format",
                                          '{{index .Config.Labels "containai.ssh-port"}} {{.Id}}', self.name],
                                         self.env).split()
        self.endpoint = ssh.Endpoint(self.name, int(port), ssh.host_key_alias(self.context or "default", container_id),
                                     self.jump)
        self.socket = ssh.control_path(ssh.control_dir(), self.endpoint)

    def recreate(self) -> None:
        """A new container for the workspace, as an agent's first command makes it: `cai run --fresh
        DIR -- true`. No shared connection to it exists yet, and no cached target reaches it."""
        self.close_master()
        run_checked([*self.cai, "run", *self.image, "--fresh", str(self.directory), "--", "true"], self.env)
        self.find_endpoint()

    def run(self, *words: str) -> float:
        return timed([*self.cai, *words], self.env)

    def warm_exec(self) -> float:
        return timed(self.exec_true, self.env)

    def cold_exec(self) -> float:
        self.close_master()  # untimed: the target stays cached, the connection is gone
        return timed(self.exec_true, self.env)

    def close_master(self) -> None:
        subprocess.run(["ssh", "-F", "none", "-o", f"ControlPath={self.socket}", "-O", "exit", ssh.HOST],
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 2
        while self.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def open_master(self) -> None:
        self.warm_exec()
        if not self.socket.exists():
            raise RuntimeError(f"cai left no control socket at {self.socket}: is CAI_SSH_MULTIPLEX off?")

    def raw_ssh(self, *options: str) -> list[str]:
        """`ssh … true` to the container's sshd with cai's key and pins, as a user would type it
        (through the engine's host with -J for an ssh:// engine)."""
        keys = self.home / ".config" / "containai"
        route = ["-F", str(self.home / ".ssh" / "config"), "-J", self.endpoint.jump] if self.endpoint.jump else ["-F", "none"]
        return [shutil.which("ssh"), *route, "-i", str(keys / "id_containai"), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={keys / 'known_hosts'}", "-o", f"HostKeyAlias={self.endpoint.alias}",
                "-o", "StrictHostKeyChecking=yes", *options, "-p", str(self.endpoint.port), f"{ssh.USER}@{ssh.HOST}", "true"]

    def raw(self, *options: str) -> Sample:
        argv = self.raw_ssh(*options)
        return lambda: timed(argv, self.env)


@dataclass
class Fixtures:
    cai: str
    python: str
    env: dict[str, str]
    local: Workspace
    host: RemoteHost
    remote: Workspace
    tls: Workspace
    engine: SpareEngine
    spare_context: str
    burst: list[Workspace]
    made: int = 0  # exited containers on the spare engine

    def grow(self, count: int) -> None:
        """Exited cai containers on the spare engine, up to `count` (8 at a time)."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: self.engine.make("exited", name=f"bench-{i:04d}"), range(self.made, count)))
        self.made = max(self.made, count)

    def settle(self, timeout: float = 120) -> None:
        """Until each engine lists what the bench made, in the state it made it, twice in a row;
        then idle a little: nothing of the bench's own may still run when the clock starts."""
        probes = [
            ([*self.local.docker, "ps", "-a", "--filter", f"name=^{self.local.name}$"], self.env, Counter(running=1)),
            (["docker", "-H", self.host.unix_host, "ps", "-a"], None, Counter(running=2)),
            (["docker", "-H", self.engine.host, "ps", "-a"], None, Counter(exited=self.made)),
        ]
        deadline, steady = time.monotonic() + timeout, 0
        while steady < 2:
            seen = [Counter(run_checked([*argv, "--format", "{{.State}}"], env).split()) for argv, env, _ in probes]
            steady = steady + 1 if seen == [want for *_, want in probes] else 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"fixtures did not settle: {seen}")
            time.sleep(0.5)
        time.sleep(SETTLE_S)


def remove_unmounted(directories: list[Path]) -> None:
    """Remove each directory, unless something is still mounted in it (a dockerd that did not stop)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for directory in directories:
        if not any(m == str(directory) or m.startswith(f"{directory}/") for m in mounts):
            shutil.rmtree(directory, ignore_errors=True)


BURST_CONTAINERS = 10


def burst_workspaces(stack: contextlib.ExitStack, cai: str, tmp: Path, image: str | None) -> list[Workspace]:
    """The burst rows' containers, with a HOME of their own: their `cai run --fresh` rewrites the
    pinned keys, which would void the other rows' cached targets."""
    home = tmp / "burst-home"
    home.mkdir()
    env = cai_env(home)
    # Container names come from the directory's: the engine may be shared, so the temp dir's random name too.
    return [Workspace(stack, cai, env, home, tmp / f"{tmp.name}-burst-{i}", image=image)
            for i in range(BURST_CONTAINERS)]


def build(stack: contextlib.ExitStack, tmp: Path, first_size: int, image: str | None) -> Fixtures:
    cai, python = install(tmp)
    home = tmp / "home"
    home.mkdir()
    env = cai_env(home)
    local = Workspace(stack, cai, env, home, tmp / "ws")
    burst = burst_workspaces(stack, cai, tmp, image)

    cleanup_leftovers()  # an interrupted run's remote host
    host = RemoteHost(basetemp=tmp).start()
    stack.callback(host.stop, check=False)
    remote_home = tmp / "remote-home"
    remote_home.mkdir()
    remote_env = cai_env(remote_home, **host.env(remote_home))
    remote = Workspace(stack, cai, remote_env, remote_home, tmp / "remote-ws", host.add_context(remote_home),
                       jump=host.destination)
    tls = Workspace(stack, cai, remote_env, remote_home, tmp / "tls-ws", host.add_tls_context(remote_home))

    # The spare dockerd's data and exec roots (spare_engine.py's names) outlive its stop: ours go too.
    roots = [Path(f"/var/lib/cai-test-engine-{SPARE_INDEX}"), Path(f"/run/cai-test-engine-{SPARE_INDEX}")]
    stack.callback(remove_unmounted, [root for root in roots if not root.exists()])
    engine = SpareEngine(SPARE_INDEX, tmp).start()
    stack.callback(engine.stop)
    fixtures = Fixtures(cai, python, env, local, host, remote, tls, engine, engine.add_context(home), burst)
    fixtures.grow(first_size)
    return fixtures


# --- the measures ----------------------------------------------------------------------------


def startup_rows(f: Fixtures, runs: int) -> list[Row]:
    python_pass = [f.python, "-c", "pass"]
    f.local.run("completion", "bash")  # its cache, as every later shell finds it
    cases = ((("--help",), 2.5), (("exec", "--help"), 2.5), (("completion", "bash"), 2.5), (("--version",), 1.5))
    return [measure("P1", f"`cai {' '.join(words)}`", lambda words=words: timed([f.cai, *words], f.env),
                    "`python -c pass`", lambda: timed(python_pass, f.env), ratio_at_most(limit), runs)
            for words, limit in cases]


def exec_rows(ws: Workspace, key: str, label: str, baseline_what: str, baseline: Sample,
              cold: Target, warm: Target, runs: int) -> list[Row]:
    """Cold exec (target cached, no live connection) and warm exec (shared connection too)
    against one baseline."""
    rows = [measure(key, f"{label}`cai exec -- true`, cold (target cached, no live connection)", ws.cold_exec,
                    baseline_what, baseline, cold, runs)]
    ws.open_master()
    rows.append(measure(key, f"{label}`cai exec -- true`, warm (shared connection, cached target)", ws.warm_exec,
                        baseline_what, baseline, warm, runs))
    return rows


def local_rows(f: Fixtures, runs: int) -> list[Row]:
    ws = f.local
    rows = exec_rows(ws, "P2", "", "raw `ssh … true` (cold)", ws.raw(), ratio_at_most(1.2), ratio_at_most(0.3), runs)
    ws.open_master()
    rows.append(measure("P2", "`cai exec -- true`, warm", ws.warm_exec,
                        "raw `ssh … true` over cai's own ControlMaster socket",
                        ws.raw("-o", "ControlMaster=no", "-o", f"ControlPath={ws.socket}"), ratio_at_most(4), runs))
    rows.append(measure("P4", "`cai status --container X`", lambda: ws.run("status", "--container", ws.name),
                        "`docker inspect X`", lambda: timed(["docker", "inspect", ws.name], f.env), ms_at_most(300), runs))
    rows.append(measure("P7", "`cai session ls --container X`", lambda: ws.run("session", "ls", "--container", ws.name),
                        "raw `ssh … true` (cold)", ws.raw(), REFERENCE, runs))
    return rows


def sshd_greets(port: int, deadline: float) -> None:
    """Until an SSH server greets on the loopback port, asked every 10 ms."""
    import socket

    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ssh.HOST, port), timeout=1) as conn:
                conn.settimeout(2)
                if conn.recv(4) == b"SSH-":
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no sshd greeted on port {port}")


def new_container_row(f: Fixtures, tmp: Path, image: str, runs: int) -> Row:
    """P8: `cai run --no-agent` of a new workspace, which returns once the container's sshd answers
    with its host keys pinned, against `docker run -d` of the same image with port 22 published,
    until that port greets. Each side's container is removed after its sample, untimed."""
    serial = iter(range(1 << 30))

    def ours() -> float:
        directory = tmp / f"{tmp.name}-new-{next(serial)}"
        directory.mkdir()
        directory.chmod(0o777)
        started = time.perf_counter()
        name = run_checked([f.cai, "run", "--no-agent", "--image", image, str(directory)], f.env).strip()
        elapsed = (time.perf_counter() - started) * 1000
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)
        return elapsed

    def theirs() -> float:
        started = time.perf_counter()
        made = run_checked(["docker", "run", "-d", "-p", f"{ssh.HOST}::22", "--label", "containai.bench=true", image]).strip()
        port = int(run_checked(["docker", "port", made, "22"]).split(":")[-1])
        sshd_greets(port, time.monotonic() + 60)
        elapsed = (time.perf_counter() - started) * 1000
        subprocess.run(["docker", "rm", "-f", made], capture_output=True, timeout=120)
        return elapsed

    return measure("P8", "`cai run --no-agent` of a new workspace, until its sshd answers", ours,
                   "`docker run -d -p 127.0.0.1::22` of the same image, until port 22 greets", theirs,
                   ratio_at_most(1.2), runs)


AGENT = "claude"


def agent_row(f: Fixtures, stack: contextlib.ExitStack, tmp: Path, base: str, runs: int) -> Row:
    """P9: `cai run` of a stopped container with the agent, until the agent has started and
    answered (it is told `--version`, so its whole run is its first output; `cai run` without a
    terminal returns once the agent's command runs), against `docker start` plus `docker exec
    AGENT --version`. Each sample's log is checked for the agent's answer, untimed."""
    image = f"containai:bench-{AGENT}-{tmp.name[-8:].lower()}"
    run_checked([f.cai, "image", "build", "--base", base, "--tag", image, "--agents", AGENT], f.env, timeout=1800)
    stack.callback(subprocess.run, ["docker", "rmi", "-f", image], capture_output=True)
    home = tmp / "agent-home"
    (home / ".config" / "containai").mkdir(parents=True)
    (home / ".config" / "containai" / "config.toml").write_text(f'[agent.{AGENT}]\nargs = ["--version"]\n')
    env = cai_env(home)
    directory = tmp / f"{tmp.name}-agent"
    directory.mkdir()
    directory.chmod(0o777)
    name = run_checked([f.cai, "run", "--no-agent", "--image", image, str(directory)], env).strip()
    stack.callback(subprocess.run, ["docker", "rm", "-f", name], capture_output=True)

    def ours() -> float:
        run_checked(["docker", "stop", "-t", "0", name])
        elapsed = timed([f.cai, "run", str(directory)], env)
        deadline = time.monotonic() + 30
        while "Claude Code" not in run_checked([f.cai, "session", "logs", AGENT, "-w", str(directory)], env):
            if time.monotonic() > deadline:
                raise RuntimeError("the agent's session shows no answer")
            time.sleep(0.1)
        return elapsed

    def theirs() -> float:
        run_checked(["docker", "stop", "-t", "0", name])
        started = time.perf_counter()
        run_checked(["docker", "start", name])
        run_checked(["docker", "exec", "-u", "agent", name, AGENT, "--version"])
        return (time.perf_counter() - started) * 1000

    return measure("P9", f"`cai run` of a stopped container with the agent ({AGENT} --version), until it has answered",
                   ours, f"`docker start` + `docker exec … {AGENT} --version`", theirs, ratio_at_most(1.5), runs)


def burst(argvs: list[list[str]], env: dict[str, str]) -> tuple[float, int]:
    """All of `argvs` started at once, as an agent's parallel tool calls are: the milliseconds
    until the last one ended, and how many `[WARN]` lines they printed. Any non-zero exit fails."""
    started = time.perf_counter()
    children = [subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE) for argv in argvs]
    said = [child.communicate(timeout=600)[1].decode(errors="replace") for child in children]
    elapsed = (time.perf_counter() - started) * 1000
    failed = [(child.returncode, err) for child, err in zip(children, said) if child.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(argvs)} failed, first ({failed[0][0]}): {failed[0][1][-500:]}")
    return elapsed, sum(err.count("[WARN]") for err in said)


def burst_row(workspaces: list[Workspace], per: int, runs: int) -> Row:
    """`per` parallel `cai exec -- true` on each of `workspaces`, all at once, right after `cai run
    --fresh -- true` made each container anew (untimed), against the same burst through plain ssh
    over cai's master, already up. Fewer pairs than the other rows: a pair is a few hundred
    processes on the shared cores."""
    env = workspaces[0].env
    warnings: list[int] = []

    def ours() -> float:
        for ws in workspaces:
            ws.recreate()
        elapsed, warned = burst([ws.exec_true for _ in range(per) for ws in workspaces], env)
        warnings.append(warned)
        return elapsed

    def theirs() -> float:
        argvs = []
        for ws in workspaces:
            ws.open_master()
            argvs += [ws.raw_ssh("-o", "ControlMaster=no", "-o", f"ControlPath={ws.socket}")] * per
        return burst(argvs, env)[0]

    count = per * len(workspaces)
    on = "a new container" if len(workspaces) == 1 else f"{len(workspaces)} new containers, {per} each"
    row = measure("P10", f"{count} parallel `cai exec -- true` on {on}, right after `cai run --fresh -- true`", ours,
                  f"the same {count} plain `ssh … true` over cai's master, already up", theirs, NO_WARNING, runs)
    # The warm-up pair's burst counts too: every burst must be free of retries.
    row.warnings = sum(warnings)
    row.note = f"{row.warnings} `[WARN]` lines in {len(warnings)} bursts"
    return row


def default_image(f: Fixtures) -> tuple[str, str]:
    """The image cai runs by default, and the base it was built on."""
    image = "containai:latest"
    return image, run_checked(["docker", "inspect", "--format", '{{index .Config.Labels "containai.base"}}', image]).strip()


def burst_rows(workspaces: list[Workspace], runs: int) -> list[Row]:
    """100 calls on one new container, and 500 over ten."""
    return [burst_row(group, per, runs) for group, per in ((workspaces[:1], 100), (workspaces, 50))]


def bash_completion_ms(env: dict[str, str], function: str, words: list[str], calls: int) -> float:
    """Milliseconds per completion call, from one bash that calls it `calls` times."""
    loop = BASH_PROBE + f"""
start=$EPOCHREALTIME
for ((i = 0; i < {calls}; i++)); do comp {' '.join(words)}; done
end=$EPOCHREALTIME
echo "$start $end"
"""
    out = run_checked(["bash", "--norc", "--noprofile", "-c", loop, "bench", str(REPO / "completions" / "cai.bash")],
                      {**env, "FN": function}, timeout=300)
    start, end = (float(x.replace(",", ".")) for x in out.split()[-2:])
    return (end - start) * 1000 / calls


def processes_per_tab(env: dict[str, str], words: list[str]) -> int | None:
    """Processes one TAB starts: strace's count over 11 calls less that over 1, over 10."""
    def processes(calls: int) -> int | None:
        body = BASH_PROBE + f"for ((i = 0; i < {calls}; i++)); do comp {' '.join(words)}; done"
        argv = ["bash", "--norc", "--noprofile", "-c", body, "bench", str(REPO / "completions" / "cai.bash")]
        counted = clone_calls(argv, {**env, "FN": "_shtab_cai"})
        return None if counted is None else counted[1]

    many, one = processes(11), processes(1)
    return None if many is None else (many - one) // 10


def completion_rows(f: Fixtures, runs: int) -> list[Row]:
    """bash, in-process: a TAB is a function call in the user's shell."""
    empty = lambda: bash_completion_ms(f.env, "_cai_bench_empty", ["cai", "st"], 200)  # noqa: E731
    cases = (("bash: `cai st<TAB>`", ["cai", "st"], 200, NO_FORK, ""),
             ("bash: `cai stop --container <TAB>`", ["cai", "--context", "default", "stop", "--container", "''"], 20,
              ms_at_most(500), ", docker, cached 5 s"))
    rows = []
    for what, words, calls, target, why in cases:
        forks = processes_per_tab(f.env, words)
        rows.append(measure("P5", what, lambda words=words, calls=calls: bash_completion_ms(f.env, "_shtab_cai", words, calls),
                            "an empty completion function", empty, target, runs,
                            note=f"{forks} processes per TAB{why}" if forks is not None else "strace missing",
                            forks=forks))
    return rows


def remote_rows(f: Fixtures, runs: int) -> list[Row]:
    ws, tls = f.remote, f.tls
    rows = exec_rows(ws, "P2r", "remote: ", "raw `ssh -J host … true` (cold)", ws.raw(), ratio_at_most(1.3),
                     ratio_at_most(0.3), runs)
    rows.append(measure("P4r", "remote: `cai status --container X`", lambda: ws.run("status", "--container", ws.name),
                        "`docker --context … inspect X`", lambda: timed([*ws.docker, "inspect", ws.name], ws.env),
                        ms_at_most(1000), runs))
    docker_exec = lambda: timed([*tls.docker, "exec", tls.name, "true"], tls.env)  # noqa: E731
    rows += exec_rows(tls, "P2t", "TLS: ", "`docker --context … exec X true`", docker_exec, REFERENCE, REFERENCE, runs)
    return rows


@dataclass
class Point:
    size: int
    gc: Row
    ps: Row

    @property
    def baseline(self) -> float:
        return statistics.median(self.gc.theirs + self.ps.theirs)


def scaling_points(f: Fixtures, sizes: list[int], runs: int) -> list[Point]:
    """gc and ps over ever more exited containers: grow, settle, measure."""
    context, points = f.spare_context, []

    def docker_ps_and_inspect() -> float:
        started = time.perf_counter()
        ids = run_checked(["docker", "--context", context, "ps", "-aq", "--filter", "label=containai.managed=true"], f.env).split()
        run_checked(["docker", "--context", context, "inspect", *ids], f.env)
        return (time.perf_counter() - started) * 1000

    baseline_what = "`docker ps -aq --filter label=…` + `docker inspect` of them"
    for size in sizes:
        if size > f.made:
            f.grow(size)
            f.settle()
        target = ms_at_most(SCALING_TARGETS_MS[size]) if size in SCALING_TARGETS_MS else REFERENCE
        gc = measure("P3", f"`cai gc --dry-run`, {size} exited containers",
                     lambda: timed([f.cai, "gc", "--dry-run", "--age", "0m", "--context", context], f.env),
                     baseline_what, docker_ps_and_inspect, target, runs)
        ps = measure("P6", f"`cai ps -a --format json`, {size} exited containers",
                     lambda: timed([f.cai, "--context", context, "ps", "-a", "--format", "json"], f.env),
                     baseline_what, docker_ps_and_inspect, target, runs)
        points.append(Point(size, gc, ps))
    return points


# --- the report ------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def spread(samples: list[float]) -> str:
    return f"{ms(min(samples))} / {ms(statistics.median(samples))} / {ms(max(samples))} ms"


def header(argv: list[str], runs: int) -> list[str]:
    docker = run_checked(["docker", "version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}}"]).strip()
    openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return [
        "# Benchmarks",
        "",
        f"Made by `python bench/run.py{''.join(' ' + shlex.quote(a) for a in argv)}` (see its docstring) on "
        f"{datetime.date.today().isoformat()}. Machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}, Docker {docker}, {openssh}.",
        "",
        f"cai was this checkout installed into a fresh, non-editable venv with its bytecode compiled; the Python "
        f"baselines ran that venv's interpreter. Each row is {runs} pairs, cai and its baseline interleaved "
        "(A B A B …) after one dropped warm-up pair, every fixture built and idle before the clock started; "
        "times are min / median / max, the ratio is the median of the per-pair ratios, and `met` judges the "
        "target where it names a number.",
        "",
    ]


def main_table(rows: list[Row]) -> list[str]:
    lines = ["| | cai | min / median / max | baseline | min / median / max | ratio (median of pairs) | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = {True: "yes", False: "no", None: "-"}[r.target.met(r)]
        what = f"{r.what} ({r.note})" if r.note else r.what
        lines.append(f"| {r.key} | {what} | {spread(r.ours)} | {r.baseline_what} | {spread(r.theirs)} | "
                     f"{r.ratio:.2f}× | {r.target.text} | {met} |")
    return lines + [""]


def scaling_section(points: list[Point], chart: Path) -> tuple[list[str], list[str]]:
    """The scaling table, its growth figures and the chart; and notes for the notes list."""
    lines = ["## Scaling: gc and ps over exited containers", "",
             "Medians, ms. Baseline: `docker --context C ps -aq --filter label=containai.managed=true` + "
             "`docker --context C inspect <ids>`.", "",
             "| containers | `cai gc --dry-run` | `cai ps -a --format json` | baseline |", "|---|---|---|---|"]
    lines += [f"| {p.size} | {ms(p.gc.median)} | {ms(p.ps.median)} | {ms(p.baseline)} |" for p in points]
    lines.append("")
    if len(points) >= 2:
        a, b = points[-2], points[-1]
        per = lambda first, last: (last - first) / (b.size - a.size)  # noqa: E731
        lines += [f"Growth between {a.size} and {b.size} containers, ms per container: "
                  f"gc {per(a.gc.median, b.gc.median):.2f}, ps {per(a.ps.median, b.ps.median):.2f}, "
                  f"baseline {per(a.baseline, b.baseline):.2f}.", ""]
    if draw_chart(points, chart):
        lines += [f"![time against containers: gc, ps and the baseline]({chart.name})", ""]
        return lines, []
    return lines, [f"No chart: matplotlib is not installed (`pip install '.[bench]'`); {chart.name} was not written."]


def draw_chart(points: list[Point], path: Path) -> bool:
    """The scaling chart as a PNG; False without matplotlib (the `bench` extra's alone)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    sizes = [p.size for p in points]
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, values in (("cai gc --dry-run", [p.gc.median for p in points]),
                          ("cai ps -a --format json", [p.ps.median for p in points]),
                          ("docker ps -aq + docker inspect", [p.baseline for p in points])):
        axes.plot(sizes, values, marker="o", label=label)
    axes.set_xlabel("exited cai containers")
    axes.set_ylabel("median time (ms)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def unmet_section(rows: list[Row]) -> list[str]:
    lines = ["## Targets not met", ""]
    for r in rows:
        if r.target.met(r) is False:
            lines += [f"- {r.key} {r.what}: {r.target.shown(r)} (target {r.target.text})",
                      "  - (why, and what it would take: filled in by hand)"]
    return lines + (["None."] if len(lines) == 2 else []) + [""]


def render(argv: list[str], runs: int, rows: list[Row], points: list[Point], chart: Path, notes: list[str]) -> str:
    scaling, chart_notes = scaling_section(points, chart)
    lines = [*header(argv, runs), *main_table(rows), *scaling, "## Notes", "",
             *[f"- {note}" for note in [*notes, *chart_notes, *FIXED_NOTES]], "", *unmet_section(rows)]
    return "\n".join(lines)


FIXED_NOTES = (
    "Cold exec means the target is cached but no shared connection is open (as after ControlPersist's five "
    "minutes): the bench closes cai's control master, untimed, before each run. Warm means both.",
    "The bash original, measured on this machine with the same fixtures (issue 9): `cai --help` 95–114 ms "
    "(5.5× `python -c pass`); `cai exec -- true` about 1.4 s (5.6–6.9× raw ssh, 15 docker and 20 python3 "
    "processes per call); gc over 200 containers 17 s (402 docker processes); status 2.2 s (1.7 s of it in "
    "`docker stats --no-stream`); a TAB 3–4 ms.",
)


def fixture_notes(f: Fixtures, sizes: list[int]) -> list[str]:
    counted = clone_calls([f.cai, "gc", "--dry-run", "--age", "0m", "--context", f.spare_context], f.env)
    forks = "strace is not installed: the processes gc starts were not counted." if counted is None else (
        f"`cai gc --dry-run` over {sizes[-1]} containers made {counted[0]} clone/fork calls (strace -f), {counted[1]} of "
        "them processes and the rest threads: no process per container.")
    return [
        f"Remote rows (P2r, P4r): an engine reached as `{f.host.docker_host}`, a network namespace on this machine "
        "with its own sshd and dockerd (tests/integration/remote_host.py); no network latency. P2t: the same engine "
        f"as `{f.host.tls_host}` with TLS, where each ssh connection is `docker exec -i … sshd -i`.",
        f"gc and ps (P3, P6) ran on a spare dockerd of the bench's own (tests/integration/spare_engine.py), grown in "
        f"batches to {', '.join(map(str, sizes))} exited containers; each batch settled before its timing.",
        forks,
        "P7: `cai session ls` on a running container asks the engine for it, then lists the records over an ssh "
        "connection of its own (not the shared one): a cold raw ssh is its floor.",
    ]


def burst_note(runs: int, image: str | None) -> str:
    return (f"P10: {runs} pairs per row (and the dropped warm-up pair), not the others' count: each pair is hundreds "
            "of processes on the machine's cores. Before each of cai's bursts, every container is made anew by "
            f"`cai run{' --image ' + image if image else ''} --fresh DIR -- true` (untimed, in a HOME of the rows' "
            "own), "
            "so no call finds a cached target or a shared connection; the `[WARN]` count covers every burst, the "
            "warm-up's included. The baseline is the same burst through plain ssh with `ControlPath` set to cai's "
            "master, which cai's burst left up.")


# --- main ------------------------------------------------------------------------------------


def sizes_arg(text: str) -> list[int]:
    sizes = sorted({int(word) for word in text.split(",") if word.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive counts")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--runs", type=int, default=15, help="pairs per measure (default 15)")
    parser.add_argument("--sizes", type=sizes_arg, default=sizes_arg("50,200,500,1000"),
                        help="exited containers for the gc and ps series (default 50,200,500,1000)")
    parser.add_argument("--burst-runs", type=int, default=3,
                        help="pairs per P10 burst row (default 3): each pair is hundreds of processes")
    parser.add_argument("--image", help="image of the P10 burst containers (default: cai's own default)")
    parser.add_argument("--only-burst", action="store_true",
                        help="the P10 rows alone, printed; written only where --output says")
    parser.add_argument("--only-launch", action="store_true",
                        help="the P8 and P9 rows alone (a new container; the agent), printed; written only where --output says")
    parser.add_argument("--output", type=Path, default=None, help="default: docs/benchmarks.md, unless --only-burst")
    args = parser.parse_args()
    output = args.output.resolve() if args.output else None if args.only_burst or args.only_launch \
        else REPO / "docs" / "benchmarks.md"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cai-bench-")))
        if args.only_launch:
            cai, python = install(tmp)
            home = tmp / "home"
            home.mkdir()
            f = Fixtures(cai, python, cai_env(home), None, None, None, None, None, "", [])  # type: ignore[arg-type]
            image, base = default_image(f)
            rows = [new_container_row(f, tmp, image, args.runs), agent_row(f, stack, tmp, base, args.runs)]
            report = "\n".join([*header(sys.argv[1:], args.runs), *main_table(rows), ""])
        elif args.only_burst:
            cai, _ = install(tmp)
            workspaces = burst_workspaces(stack, cai, tmp, args.image)
            time.sleep(SETTLE_S)
            rows = burst_rows(workspaces, args.burst_runs)
            report = "\n".join([*header(sys.argv[1:], args.burst_runs), *main_table(rows), "## Notes", "",
                                f"- {burst_note(args.burst_runs, args.image)}", ""])
        else:
            f = build(stack, tmp, args.sizes[0], args.image)
            f.settle()
            image, base = default_image(f)
            rows = [*startup_rows(f, args.runs), *local_rows(f, args.runs), *completion_rows(f, args.runs),
                    *remote_rows(f, args.runs), *burst_rows(f.burst, args.burst_runs)]
            rows += [new_container_row(f, tmp, image, args.runs), agent_row(f, stack, tmp, base, args.runs)]
            points = scaling_points(f, args.sizes, args.runs)
            rows += [row for p in points for row in (p.gc, p.ps)]
            notes = [*fixture_notes(f, args.sizes), burst_note(args.burst_runs, args.image)]
            assert output is not None
            chart = output.with_name(f"{output.stem}-scaling.png")
            report = render(sys.argv[1:], args.runs, rows, points, chart, notes)
    if output is not None:
        output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
