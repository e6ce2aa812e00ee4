"""How long `cai status` takes on a running container, against what the bash original runs for
the same answer (measured in this run, on this machine):

  baseline: docker inspect + the session probe twice (docker exec) + docker stats --no-stream

Usage: python bench/status.py [--runs N]. It makes a workspace container with `cai run` in a
temporary HOME and removes it at the end. Prints medians and the ratio cai / baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SESSION_SCRIPT = "command -v ss >/dev/null || exit 2; ss -t state established sport = :22 | tail -n +2 | wc -l; ls /dev/pts | grep -c '^[0-9]'"


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cai-bench-") as tmp:
        home, workspace = Path(tmp) / "home", Path(tmp) / "ws"
        home.mkdir()
        workspace.mkdir()
        workspace.chmod(0o777)
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
        env.pop("XDG_CONFIG_HOME", None)
        cai = [sys.executable, "-m", "cai"]
        name = subprocess.run([*cai, "run", str(workspace)], env=env, capture_output=True, text=True, check=True).stdout.strip()
        try:
            def baseline() -> float:
                started = time.monotonic()
                for argv in (["docker", "inspect", name],
                             ["docker", "exec", name, "sh", "-c", SESSION_SCRIPT],
                             ["docker", "exec", name, "sh", "-c", SESSION_SCRIPT],
                             ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}|{{.CPUPerc}}", name]):
                    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True)
                return time.monotonic() - started

            ours = [timed([*cai, "status", "--container", name, "--json"], env) for _ in range(args.runs)]
            theirs = [baseline() for _ in range(args.runs)]
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    cai_median, base_median = statistics.median(ours), statistics.median(theirs)
    print(f"cai status --json      median {cai_median:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in ours)})")
    print(f"baseline (bash's calls) median {base_median:.3f} s  (runs: {', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"ratio cai/baseline: {cai_median / base_median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
