"""CPU time and memory of running processes (Linux ``/proc``): what the benchmarks charge a
server. What a record was taken on is in storage/measurements.py (``machine_info``)."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (proc(5), fields 14-15)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``): a supervisor and its serving workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_s(pid: int, pids: list[int] | None = None) -> float | None:
    """CPU seconds of ``pid`` and its live descendants (or of ``pids``, e.g. the workers a
    supervisor named): a multi-process server's CPU. None where ``/proc`` is unavailable."""
    total, seen = 0.0, False
    for p in pids if pids is not None else process_tree(pid):
        cpu = process_cpu_s(p)
        if cpu is not None:
            total += cpu
            seen = True
    return total if seen else None


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process in MB (``VmRSS``), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None
