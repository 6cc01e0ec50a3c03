"""Writing a deploy bundle all or nothing.

`staged_bundle` hands out a hidden sibling folder (`models/.deploy-tmp-<pid>`) to build the bundle in. Only
when the block ends without an error, and `read_bundle` accepts what it built, does that folder take the
bundle's place: the old bundle is renamed aside, the new one renamed in, then the old one removed. A writer
killed at any point leaves the old bundle where it was (or, in the instant between the two renames, aside,
where the next run puts it back) and a temporary folder that the next run removes: never a half-built bundle
where the Predictor looks for one.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fish_classifier.cpus import process_running
from fish_classifier.serving.bundle import INFO_FILE, BundleError, read_bundle


@contextmanager
def staged_bundle(out_dir) -> Iterator[Path]:
    """A fresh folder to write a bundle in (`write_bundle`, `export_for_serving`, `add_*`); on leaving the block
    without an error the finished bundle replaces `out_dir` whole. On an error `out_dir` is left as it was."""
    out_dir = Path(out_dir)
    # Only ever replace a folder that is empty or already a bundle, never a path given by mistake.
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / INFO_FILE).is_file())):
        raise BundleError(f"refusing to overwrite {out_dir}: it is not empty and holds no {INFO_FILE}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _clean_up(out_dir)
    staging = _sibling(out_dir, "tmp", os.getpid())
    staging.mkdir()
    try:
        yield staging
        read_bundle(staging)  # never publish a bundle that serving would refuse, or that lacks a promised part
        _sync(staging)
        _replace(out_dir, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(out_dir: Path, staging: Path) -> None:
    aside = _sibling(out_dir, "old", os.getpid())
    if out_dir.exists():
        out_dir.rename(aside)
    staging.rename(out_dir)
    _flush(out_dir.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _clean_up(out_dir: Path) -> None:
    """Put back a bundle that a publish killed between its two renames left aside, and remove the temporary
    folders of writers that are no longer running."""
    for kind in ("old", "tmp"):
        for path in sorted(out_dir.parent.glob(f".{out_dir.name}-{kind}-*")):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and process_running(int(pid)):
                continue  # another writer's, still at work
            if kind == "old" and not out_dir.exists():
                path.rename(out_dir)  # a whole bundle: it was published before it was set aside
            else:
                shutil.rmtree(path, ignore_errors=True)


def _sibling(out_dir: Path, kind: str, pid: int) -> Path:
    return out_dir.with_name(f".{out_dir.name}-{kind}-{pid}")


def _sync(folder: Path) -> None:
    """Flush every file and folder of the bundle to disk before it is renamed into place: after a power cut the
    rename could otherwise outlive the files' contents (read_bundle would then refuse them by their sha256)."""
    for path in (*folder.rglob("*"), folder):
        _flush(path)


def _flush(path: Path) -> None:
    """fsync a file or a folder (a folder's entries: the names in it)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
