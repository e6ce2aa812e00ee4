"""Every benchmark, side by side with the raw tool that does the same job, measured in this run on
this machine; writes docs/benchmarks.md.

    python bench/run.py [--runs N] [--containers N] [--output docs/benchmarks.md]

Each measure runs N times (default 20) after one warm-up that is dropped, and reports medians and
the ratio cai / baseline. It is a report, not a test: nothing here fails on a time.

Fixtures: a temporary HOME with one workspace container made by `cai run` (removed at the end),
and a spare dockerd of its own with N stopped cai containers for gc (tests/integration/
spare_engine.py), so the shared engine's containers are never touched.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

from spare_engine import SpareEngine  # noqa: E402

SPARE_INDEX = 9
BASH_PROBE = r"""
source "$1"
_cai_bench_empty() { COMPREPLY=(); }
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); "$FN"; }
"""


@dataclass
class Measure:
    key: str
    what: str
    baseline_what: str
    ours: list[float]
    theirs: list[float]
    target: str
    unit: str = "ms"
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.theirs)


def timed(argv: list[str], env: dict[str, str], *, check: bool = True) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed * 1000


def repeat(fn, runs: int) -> list[float]:
    return [fn() for _ in range(runs + 1)][1:]  # the first is a warm-up


def cai_argv() -> list[str]:
    entry = Path(sys.executable).parent / "cai"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "cai"]


def bash_completion_ms(script: Path, env: dict[str, str], function: str, words: list[str], calls: int) -> float:
    """Milliseconds per completion call, from one bash that calls it `calls` times."""
    loop = BASH_PROBE + f"""
start=$EPOCHREALTIME
for ((i = 0; i < {calls}; i++)); do comp {' '.join(words)}; done
end=$EPOCHREALTIME
echo "$start $end"
"""
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", loop, "bench", str(script)], env={**env, "FN": function},
                          capture_output=True, text=True, check=True, timeout=300)
    start, end = (float(x.replace(",", ".")) for x in done.stdout.split()[-2:])
    return (end - start) * 1000 / calls


def forks_per_call(script: Path, env: dict[str, str], function: str, words: list[str]) -> int | None:
    """Processes one completion call starts (strace's count of clone/fork), or None without strace."""
    if shutil.which("strace") is None:
        return None

    def count(calls: int) -> int:
        with tempfile.NamedTemporaryFile(mode="r") as trace:
            body = BASH_PROBE + f"for ((i = 0; i < {calls}; i++)); do comp {' '.join(words)}; done"
            subprocess.run(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", trace.name,
                            "bash", "--norc", "--noprofile", "-c", body, "bench", str(script)],
                           env={**env, "FN": function}, capture_output=True, check=True, timeout=300)
            return sum(1 for line in open(trace.name) if "clone" in line or "fork" in line)

    return (count(11) - count(1)) // 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    cai = cai_argv()
    # An installed package has its bytecode compiled; a checkout run with PYTHONDONTWRITEBYTECODE
    # would otherwise compile every module on every call and measure that instead.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "cai")], check=True, capture_output=True)
    measures: list[Measure] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cai-bench-") as tmp:
        home, workspace = Path(tmp) / "home", Path(tmp) / "ws"
        home.mkdir()
        workspace.mkdir()
        workspace.chmod(0o777)
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
        for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "CAI_SSH_MULTIPLEX", "CONTAINAI_SECURE_ENGINE_CONTEXT"):
            env.pop(var, None)
        name = subprocess.run([*cai, "run", str(workspace)], env=env, capture_output=True, text=True, check=True).stdout.strip()
        try:
            port = int(subprocess.run(["docker", "inspect", "--format", '{{index .Config.Labels "containai.ssh-port"}}', name],
                                      capture_output=True, text=True, check=True).stdout)
            container_id = subprocess.run(["docker", "inspect", "--format", "{{.Id}}", name],
                                          capture_output=True, text=True, check=True).stdout.strip()
            from cai import ssh

            endpoint = ssh.Endpoint(name, port, ssh.host_key_alias("default", container_id))
            key = home / ".config" / "containai" / "id_containai"
            known = home / ".config" / "containai" / "known_hosts"
            raw_ssh = ["ssh", "-F", "none", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
                       "-o", f"HostKeyAlias={endpoint.alias}",  # where cai pins the container's keys
                       "-o", "StrictHostKeyChecking=yes", "-p", str(port), "agent@127.0.0.1", "true"]
            python_pass = [sys.executable, "-c", "pass"]

            # P1: start-up
            baseline = repeat(lambda: timed(python_pass, env), args.runs)
            measures.append(Measure("P1", "`cai --help`", "`python -c pass`", repeat(lambda: timed([*cai, "--help"], env), args.runs),
                                    baseline, "≤ 2.5×"))
            measures.append(Measure("P1", "`cai completion bash`", "`python -c pass`",
                                    repeat(lambda: timed([*cai, "completion", "bash"], env), args.runs), baseline, "≤ 2.5×"))

            # P2: one command in the container
            cold_ssh = repeat(lambda: timed(raw_ssh, env), args.runs)
            unshared = {**env, "CAI_SSH_MULTIPLEX": "0"}
            exec_true = [*cai, "exec", "--container", name, "--", "true"]
            control_dir = ssh.control_dir()
            close_master = raw_ssh[:-2] + ["-o", f"ControlPath={ssh.control_path(control_dir, endpoint)}", "-O", "exit",
                                           "agent@127.0.0.1"]

            def cold_exec() -> float:
                subprocess.run(close_master, env=env, capture_output=True)  # untimed: no live connection
                return timed(exec_true, env)

            measures.append(Measure("P2", "`cai exec -- true`, cold (target cached, no live connection)", "raw `ssh … true`",
                                    repeat(cold_exec, args.runs), cold_ssh, "≤ 1.3×"))
            measures.append(Measure("P2", "`cai exec -- true`, fast path off (`CAI_SSH_MULTIPLEX=0`: engine look-ups, new connection)",
                                    "raw `ssh … true`", repeat(lambda: timed(exec_true, unshared), args.runs), cold_ssh,
                                    "(for reference)"))
            timed(exec_true, env)  # opens the shared connection for the warm rows
            warm = repeat(lambda: timed(exec_true, env), args.runs)
            measures.append(Measure("P2", "`cai exec -- true`, warm (shared connection, cached target)", "raw `ssh … true` (cold)",
                                    warm, cold_ssh, "≤ 0.3×"))
            control = Path(tempfile.gettempdir()) / f"cai-bench-{os.getpid()}"
            mux_ssh = raw_ssh[:-2] + ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=60",
                                      "agent@127.0.0.1", "true"]
            measures.append(Measure("P2", "`cai exec -- true`, warm", "raw `ssh … true` over a ControlMaster",
                                    warm, repeat(lambda: timed(mux_ssh, env), args.runs), "(for reference)"))
            subprocess.run(mux_ssh[:-2] + ["-O", "exit", "agent@127.0.0.1"], env=env, capture_output=True)

            # P4: status
            measures.append(Measure("P4", "`cai status --container X`", "`docker inspect X`",
                                    repeat(lambda: timed([*cai, "status", "--container", name], env), args.runs),
                                    repeat(lambda: timed(["docker", "inspect", name], env), args.runs), "≤ 500 ms"))

            # P5: completion (bash, in-process: a TAB is a function call in the user's shell)
            script = REPO / "completions" / "cai.bash"
            calls = 200
            empty = [bash_completion_ms(script, env, "_cai_bench_empty", ["cai", "st"], calls) for _ in range(args.runs + 1)][1:]
            subcommands = [bash_completion_ms(script, env, "_shtab_cai", ["cai", "st"], calls) for _ in range(args.runs + 1)][1:]
            names = [bash_completion_ms(script, env, "_shtab_cai", ["cai", "--context", "default", "stop", "--container", "''"], 20)
                     for _ in range(args.runs + 1)][1:]
            sub_forks = forks_per_call(script, env, "_shtab_cai", ["cai", "st"])
            name_forks = forks_per_call(script, env, "_shtab_cai", ["cai", "stop", "--container", "''"])
            measures.append(Measure("P5", "bash: `cai st<TAB>`", "an empty completion function", subcommands, empty,
                                    "no fork", note=f"{sub_forks} processes per TAB" if sub_forks is not None else ""))
            measures.append(Measure("P5", "bash: `cai stop --container <TAB>`", "an empty completion function", names, empty,
                                    "≤ 0.5 s", note=f"{name_forks} processes per TAB (docker, cached 5 s)" if name_forks is not None else ""))
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)

        # P2r: the same through an ssh:// context whose engine runs on another host (the tests' one)
        measures += remote_exec_measures(Path(tmp), cai, args.runs, notes)

        # P3: gc over many stopped containers, on an engine of its own
        engine = SpareEngine(SPARE_INDEX, Path(tmp)).start()
        try:
            context = engine.add_context(home)
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: engine.make("exited", name=f"bench-{i:03d}"), range(args.containers)))

            def ps_and_inspect() -> float:
                started = time.perf_counter()
                ids = subprocess.run(["docker", "--context", context, "ps", "-aq", "--filter", "label=containai.managed=true"],
                                     env=env, capture_output=True, text=True, check=True).stdout.split()
                subprocess.run(["docker", "--context", context, "inspect", *ids], env=env, capture_output=True, check=True)
                return (time.perf_counter() - started) * 1000

            measures.append(Measure("P3", f"`cai gc --dry-run`, {args.containers} stopped containers",
                                    "`docker ps -aq --filter label=…` + `docker inspect` of them",
                                    repeat(lambda: timed([*cai, "gc", "--dry-run", "--age", "0m", "--context", context], env), args.runs),
                                    repeat(ps_and_inspect, args.runs), "≤ 1 s"))
            measures.append(Measure("P6", f"`cai ps -a --format json`, {args.containers} stopped containers",
                                    "`docker ps -aq --filter label=…` + `docker inspect` of them",
                                    repeat(lambda: timed([*cai, "--context", context, "ps", "-a", "--format", "json"], env),
                                           args.runs),
                                    repeat(ps_and_inspect, args.runs), "about 1 s"))
        finally:
            engine.stop()
            notes.append(f"gc ran on a spare dockerd ({args.containers} exited containers, tests/integration/spare_engine.py).")

    args.output.write_text(render(measures, args.runs, notes))
    print(args.output.read_text())
    return 0


def remote_exec_measures(tmp: Path, cai: list[str], runs: int, notes: list[str]) -> list[Measure]:
    """Exec and status through `ssh://root@ADDR` (tests/integration/remote_host.py), against raw
    `ssh -J` to the same sshd and `docker --context … inspect`."""
    from remote_host import RemoteHost, cleanup_leftovers

    from cai import ssh

    home, workspace = tmp / "remote-home", tmp / "remote-ws"
    home.mkdir()
    workspace.mkdir()
    workspace.chmod(0o777)
    cleanup_leftovers()
    host = RemoteHost(basetemp=tmp).start()
    try:
        context = host.add_context(home)
        env = {**os.environ, **host.env(home)}
        for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "CAI_SSH_MULTIPLEX", "CONTAINAI_SECURE_ENGINE_CONTEXT"):
            env.pop(var, None)
        name = subprocess.run([*cai, "--context", context, "run", str(workspace)], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()
        found = host.client.containers.get(name)
        endpoint = ssh.Endpoint(name, int(found.labels["containai.ssh-port"]), ssh.host_key_alias(context, found.id),
                                host.destination)
        key = home / ".config" / "containai" / "id_containai"
        known = home / ".config" / "containai" / "known_hosts"
        raw = ["/usr/bin/ssh", "-F", str(home / ".ssh" / "config"), "-J", host.destination, "-i", str(key),
               "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}", "-o", f"HostKeyAlias={endpoint.alias}",
               "-o", "StrictHostKeyChecking=yes", "-p", str(endpoint.port), "agent@127.0.0.1", "true"]
        exec_true = [*cai, "--context", context, "exec", "--container", name, "--", "true"]
        close_master = [*ssh.base_argv(endpoint), "-o", f"ControlPath={ssh.control_path(ssh.control_dir(), endpoint)}",
                        "-O", "exit", ssh.HOST]

        def cold_exec() -> float:
            subprocess.run(close_master, env=env, capture_output=True)
            return timed(exec_true, env)

        cold_jump = repeat(lambda: timed(raw, env), runs)
        measures = [Measure("P2r", "remote: `cai exec -- true`, cold (target cached, no live connection)",
                            "raw `ssh -J host … true`", repeat(cold_exec, runs), cold_jump, "≤ 1.3×")]
        timed(exec_true, env)
        measures.append(Measure("P2r", "remote: `cai exec -- true`, warm (shared connection, cached target)",
                                "raw `ssh -J host … true` (cold)", repeat(lambda: timed(exec_true, env), runs), cold_jump,
                                "≤ 0.3×"))
        measures.append(Measure("P4r", "remote: `cai status --container X`", "`docker --context … inspect X`",
                                repeat(lambda: timed([*cai, "--context", context, "status", "--container", name], env), runs),
                                repeat(lambda: timed(["docker", "--context", context, "inspect", name], env), runs),
                                "(for reference)"))
        subprocess.run(close_master, env=env, capture_output=True)
        measures += tls_exec_measures(host, home, tmp, cai, env, runs)
        notes.append(f"Remote rows (P2r, P4r): an engine reached as `{host.docker_host}`, a network namespace on this "
                     "machine with its own sshd and dockerd (tests/integration/remote_host.py); no network latency. "
                     f"P2t: the same engine as `{host.tls_host}` with TLS, where each ssh connection is "
                     "`docker exec -i … sshd -i`.")
        return measures
    finally:
        host.stop(check=False)


def tls_exec_measures(host, home: Path, tmp: Path, cai: list[str], env: dict[str, str], runs: int) -> list[Measure]:
    """Exec through a tcp:// (TLS) context: ssh over the engine's exec, against `docker exec`."""
    from cai import ssh

    context = host.add_tls_context(home)
    workspace = tmp / "tls-ws"
    workspace.mkdir()
    workspace.chmod(0o777)
    name = subprocess.run([*cai, "--context", context, "run", str(workspace)], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    found = host.client.containers.get(name)
    endpoint = ssh.Endpoint(name, int(found.labels["containai.ssh-port"]), ssh.host_key_alias(context, found.id),
                            None, None)  # enough to find and close its master
    exec_true = [*cai, "--context", context, "exec", "--container", name, "--", "true"]
    close_master = [*ssh.base_argv(endpoint), "-o", f"ControlPath={ssh.control_path(ssh.control_dir(), endpoint)}",
                    "-O", "exit", ssh.HOST]

    def cold_exec() -> float:
        subprocess.run(close_master, env=env, capture_output=True)
        return timed(exec_true, env)

    docker_exec = repeat(lambda: timed(["docker", "--context", context, "exec", name, "true"], env), runs)
    measures = [Measure("P2t", "TLS: `cai exec -- true`, cold (a new `sshd -i` through the engine)",
                        "`docker --context … exec X true`", repeat(cold_exec, runs), docker_exec, "(for reference)")]
    timed(exec_true, env)
    measures.append(Measure("P2t", "TLS: `cai exec -- true`, warm (shared connection, cached target)",
                            "`docker --context … exec X true`", repeat(lambda: timed(exec_true, env), runs), docker_exec,
                            "(for reference)"))
    subprocess.run(close_master, env=env, capture_output=True)
    return measures


def render(measures: list[Measure], runs: int, notes: list[str]) -> str:
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True).stdout.strip()
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    lines = [
        "# Benchmarks",
        "",
        "Made by `python bench/run.py` (see its docstring); every row's baseline was measured in the same run.",
        f"Medians of {runs} runs after one dropped warm-up. Machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}, Docker engine {docker}, {ssh}. "
        f"Date: {datetime.date.today().isoformat()}.",
        "",
        "| | cai | median | baseline | median | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in measures:
        ours, theirs = statistics.median(m.ours), statistics.median(m.theirs)
        extra = f" ({m.note})" if m.note else ""
        lines.append(f"| {m.key} | {m.what}{extra} | {ours:.1f} ms | {m.baseline_what} | {theirs:.1f} ms | "
                     f"{m.ratio:.2f}× | {m.target} |")
    lines += ["", *[f"- {note}" for note in notes], *[f"- {note}" for note in FIXED_NOTES], ""]
    return "\n".join(lines)


FIXED_NOTES = (
    "Cold P2 means the target is cached but no shared connection is open (as after ControlPersist's five "
    "minutes); warm means both. With the fast path off, every call asks the engine and opens a connection.",
    "bench/run.py compiles cai's bytecode first, as an installed package has it: with PYTHONDONTWRITEBYTECODE "
    "set, a checkout would otherwise compile each module on every call.",
    "The bash original, measured on this machine with the same fixtures (issue 9): `cai --help` 95–114 ms "
    "(5.5× `python -c pass`); `cai exec -- true` about 1.4 s (5.6–6.9× raw ssh, 15 docker and 20 python3 "
    "processes per call); gc over 200 containers 17 s (402 docker processes); status 2.2 s (1.7 s of it in "
    "`docker stats --no-stream`); a TAB 3–4 ms.",
)


if __name__ == "__main__":
    sys.exit(main())
