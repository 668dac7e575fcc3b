"""A process's own peak memory (standard library only, so measuring it costs nothing).

On Linux, `ru_maxrss` starts at the peak the process had before exec, which for a forked child is its
parent's: a worker started by a 2 GB app would report at least 2 GB. VmHWM in /proc/self/status is the
high-water mark of this process image alone.
"""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started (exec), in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # elsewhere: the best there is
