"""Scratch folders: where a data stage unpacks or copies before it renames its output into place.

A scratch folder is named `.<what>-tmp-<pid>-<random>` after the process that made it, so that the next data
stage to start can tell a killed run's folder (its process is gone) from one being filled now.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

from fish_classifier.cpus import process_running

# A scratch folder of any data stage: .<what>-tmp-<pid of the process that made it>-<random>.
_SCRATCH = re.compile(r"^\.[\w.-]+?-tmp-(?:(\d+)-)?")
# What earlier versions left in data/ (tempfile's own names, by gather_photos and the composite stage).
_OLD_SCRATCH = re.compile(r"^(?:tmp|backgrounds-)[a-z0-9_]{8}$")


def scratch_folder(parent: str | Path, prefix: str) -> tempfile.TemporaryDirectory:
    """A new folder `<prefix><pid>-<random>` in `parent` (made if need be) for a data stage to unpack into,
    removed when the `with` block ends. `prefix` is `.<what>-tmp-` (download.TEMP_PREFIX for data/raw).

    A run killed with -9 never ends its block, and DVC may restore the next run's outputs from its cache
    without running it: so every data stage that makes one first removes the stale ones, of any stage.
    """
    if not _SCRATCH.match(prefix):
        raise ValueError(f"a scratch folder's prefix is .<what>-tmp-, got {prefix!r}")
    remove_stale_scratch(parent)
    Path(parent).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=parent)


def remove_stale_scratch(parent: str | Path) -> list[Path]:
    """Delete the scratch folders in `parent` whose process is gone (a killed run's), and return them.

    A folder of a process still running (another stage, unpacking now) is left alone.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    stale = []
    for folder in parent.iterdir():
        scratch = _SCRATCH.match(folder.name)
        if folder.is_dir() and ((scratch and not _running(scratch.group(1))) or _OLD_SCRATCH.match(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
            stale.append(folder)
    return stale


def _running(pid: str | None) -> bool:
    """Whether the process `pid` (from a scratch folder's name; None in an older name) is still running."""
    return pid is not None and process_running(int(pid))
