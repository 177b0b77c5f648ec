"""Peak memory of the current process, as the benchmarks report it."""

from __future__ import annotations

import resource


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss
    across exec, so a measuring child started by a parent that had just generated 3 GB of input
    would report the parent's 3 GB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
