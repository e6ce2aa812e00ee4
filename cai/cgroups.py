"""A container's CPU and memory, read from its cgroup: the same files dockerd reads for `docker
stats`, without waiting for the daemon's one-second sampling tick.

`sample` reads them on this host, for an engine on this machine (the container's main process is
visible in /proc), for cgroup v1 and v2 with the cgroupfs and the systemd drivers, because the
path comes from /proc/PID/cgroup. `from_inside` parses what a root exec read inside the container
(an engine elsewhere; container_scripts.RESOURCES_SCRIPT, v1 or v2). When neither works the
caller asks the engine's stats API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _paths(pid: int) -> dict[str, Path]:
    """controller name ("" for v2) -> the container's cgroup directory."""
    found: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in (controllers.split(",") if controllers else [""]):
            found[controller] = path.lstrip("/")
    v1 = {c: ROOT / c / p for c, p in found.items() if c in ("cpuacct", "memory") and (ROOT / c / p).is_dir()}
    if "cpuacct" not in v1:  # some systems mount cpu,cpuacct together
        for mount in ("cpu,cpuacct", "cpuacct,cpu"):
            if "cpuacct" in found and (ROOT / mount / found["cpuacct"]).is_dir():
                v1["cpuacct"] = ROOT / mount / found["cpuacct"]
    if "" in found and (ROOT / found[""] / "cpu.stat").exists():
        return {"v2": ROOT / found[""]}
    return v1


def _cpu_ns(paths: dict[str, Path]) -> int:
    if "v2" in paths:
        for line in (paths["v2"] / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) * 1000
        raise ValueError("no usage_usec")
    return int((paths["cpuacct"] / "cpuacct.usage").read_text())


def _system_ns() -> int:
    """All CPUs' time since boot, as dockerd computes system_cpu_usage."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:8]
    return sum(int(f) for f in fields) * 1_000_000_000 // _USER_HZ


def _memory(paths: dict[str, Path]) -> tuple[int, int, int]:
    """(usage without inactive file cache, limit) like `docker stats`, and the host's total."""
    if "v2" in paths:
        base, usage_file, limit_file = paths["v2"], "memory.current", "memory.max"
    else:
        base, usage_file, limit_file = paths["memory"], "memory.usage_in_bytes", "memory.limit_in_bytes"
    usage = int((base / usage_file).read_text())
    raw_limit = (base / limit_file).read_text().strip()
    stats = dict(line.split() for line in (base / "memory.stat").read_text().splitlines() if len(line.split()) == 2)
    inactive = int(stats.get("total_inactive_file", stats.get("inactive_file", 0)))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = total if raw_limit == "max" else min(int(raw_limit), total)
    return (usage - inactive if inactive < usage else usage), limit, total


# Long enough for the cgroup's microsecond counter to mean something, short enough for status's
# 0.3 s aim (the probe runs after it, so its own CPU is not counted).
SAMPLE_INTERVAL_S = 0.05


def sample(pid: int, container_id: str, interval: float = SAMPLE_INTERVAL_S) -> dict[str, int] | None:
    """Memory now, and CPU over `interval`; None when the cgroup is not readable from here, or is
    not the container's (a PID from an engine in a VM can name an unrelated local process)."""
    try:
        paths = _paths(pid)
        if not paths or not all(container_id in str(path) for path in paths.values()):
            return None
        cpu_before, system_before = _cpu_ns(paths), _system_ns()
        time.sleep(interval)
        cpu_after, system_after = _cpu_ns(paths), _system_ns()
        usage, limit, _ = _memory(paths)
    except (OSError, ValueError, KeyError):
        return None
    return {"memory_usage": usage, "memory_limit": limit, "cpu_delta": cpu_after - cpu_before,
            "system_delta": system_after - system_before, "online_cpus": os.cpu_count() or 1}


def from_inside(text: str) -> dict[str, int | None] | None:
    """What container_scripts.RESOURCES_SCRIPT printed, as `sample` returns it (CPU against wall
    time on one CPU, as `docker stats` counts it); None when it printed something else."""
    fields = text.split()
    if len(fields) != 7 or not all(f.isascii() and f.isdigit() for f in fields[:5]):
        return None
    before, after, start, end, usage = (int(f) for f in fields[:5])
    inactive = int(fields[6]) if fields[6].isascii() and fields[6].isdigit() else 0
    limit = int(fields[5]) if fields[5].isascii() and fields[5].isdigit() else None  # v2's "max": none set
    if limit is not None and limit >= 1 << 62:  # v1's way of saying none
        limit = None
    if end <= start or after < before:
        return None
    return {"memory_usage": usage - inactive if inactive < usage else usage, "memory_limit": limit,
            "cpu_delta": after - before, "system_delta": end - start, "online_cpus": 1}
