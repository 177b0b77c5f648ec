"""CPU seconds of a process tree, from Linux /proc: the work of a benchmark's peers (Chromium's
processes, Celery workers and their pool children) happens in processes the timing process never
waits for, so ``getrusage`` does not see it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds so far of ``roots`` and all their live descendants, each with the children
    it has waited for (utime + stime + cutime + cstime): a difference of two readings counts a
    child that exited in between. 0 where there is no /proc."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent, cpu = {}, {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = sum(int(f) for f in fields[11:15]) / ticks
    tree, grown = set(roots), True
    while grown:  # pids are reused, so a child may have a lower pid than its parent
        new = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= new
        grown = bool(new)
    return sum(cpu[pid] for pid in tree if pid in cpu)
