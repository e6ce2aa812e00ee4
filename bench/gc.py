"""How long `cai gc --dry-run` takes over many stopped cai containers, against the raw tools
(measured in this run, on this machine):

  baseline: docker ps -aq --filter label=containai.managed=true, then one docker inspect of them all

Usage: python bench/gc.py [--containers N] [--runs N]. Runs on a spare dockerd of its own (see
tests/integration/spare_engine.py), so the shared engine's containers are never touched. Prints
medians and the ratio cai / baseline; the first run of each is a warm-up and is dropped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

from spare_engine import SpareEngine  # noqa: E402

SPARE_INDEX = 9


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cai-bench-") as tmp:
        home = Path(tmp)
        engine = SpareEngine(SPARE_INDEX, home).start()
        try:
            context = engine.add_context(home)
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: engine.make("exited", name=f"bench-{i:03d}"), range(args.containers)))
            env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
            env.pop("XDG_CONFIG_HOME", None)
            cai = [sys.executable, "-m", "cai", "gc", "--dry-run", "--age", "0m", "--context", context]

            def baseline() -> float:
                started = time.monotonic()
                ids = subprocess.run(["docker", "--context", context, "ps", "-aq", "--filter", "label=containai.managed=true"],
                                     env=env, capture_output=True, text=True, check=True).stdout.split()
                subprocess.run(["docker", "--context", context, "inspect", *ids], env=env, capture_output=True, check=True)
                return time.monotonic() - started

            ours = [timed(cai, env) for _ in range(args.runs + 1)][1:]
            theirs = [baseline() for _ in range(args.runs + 1)][1:]
        finally:
            engine.stop()
    cai_median, base_median = statistics.median(ours), statistics.median(theirs)
    print(f"{args.containers} stopped containers, {args.runs} runs each")
    print(f"cai gc --dry-run           median {cai_median:.3f} s")
    print(f"baseline (ps + 1 inspect)  median {base_median:.3f} s")
    print(f"ratio cai/baseline: {cai_median / base_median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
