"""Processes a benchmark starts beside itself (Chromium's processes, Celery workers and their
pool children): their CPU seconds, from Linux /proc, as the timing process never waits for them
and ``getrusage`` does not see them; and stopping them, each in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
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


def stop_process_groups(processes: Iterable[subprocess.Popen], grace: float = 30) -> None:
    """SIGTERM to the process group of each of ``processes`` still running (started with
    ``start_new_session=True``: a Celery worker and its pool children), then SIGKILL to a group
    whose leader has not exited after ``grace`` seconds."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
