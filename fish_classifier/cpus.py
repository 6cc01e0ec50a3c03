"""How many CPU threads this process should use: one small module, so that its users depend on nothing else."""

import os


def usable_cpus() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """CPU threads for LiteRT: the limit `fish-classifier repro --jobs N` gives each job, else every usable CPU."""
    limit = os.environ.get("TF_NUM_INTRAOP_THREADS")
    return int(limit) if limit else usable_cpus()
