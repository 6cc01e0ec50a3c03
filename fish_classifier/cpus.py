"""The host: how many CPU threads this process should use, and whether another process still runs.

On the ground floor because serving (the Predictor's decoders, LiteRT, bundle_publish's lock), data (scratch
folders, the outlier pool), the command line, the stages and bench all ask it, and serving may import nothing
from data, nor data from serving."""

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


def process_running(pid: int) -> bool:
    """Whether process `pid` still runs (another user's counts): the writer of a scratch folder named after it."""
    if pid <= 0:  # os.kill(0, ...) would ask about this process's group
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except PermissionError:
        return True  # another user's
    except (ProcessLookupError, OverflowError):
        return False
    return True
