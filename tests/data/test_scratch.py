"""Scratch folders: named for the process that made them, removed after use, and removed by the next data stage
when a killed run left them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fish_classifier.data.scratch import remove_stale_scratch, scratch_folder


def _gone_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_unpacking_removes_every_stale_scratch_folder_but_those_of_running_processes(tmp_path):
    """kill -9 while unpacking left a 1.1 GB data/.raw-tmp-*; DVC may then restore data/raw from its run cache
    without running download. Any data stage that unpacks removes the scratch folders of processes that are gone,
    its own kind or another stage's, and of earlier versions (tempfile's names)."""
    data = tmp_path / "data"
    gone = _gone_pid()
    stale = [f".raw-tmp-{gone}-k1ll3d", ".photos-tmp-1234567-x", ".backgrounds-tmp-old", "tmpab_cd123",
             "backgrounds-0a1b2c3d"]
    for name in stale:
        (data / name / "unpacked").mkdir(parents=True)
        (data / name / "unpacked" / "half.jpg").write_bytes(bytes(1000))
    running = data / f".photos-tmp-{os.getpid()}-now"  # another stage unpacking at this moment
    kept = [running, data / "tmp", data / "notes-tmp-1", data / "raw-tmp-1"]  # not scratch names
    for folder in kept:
        folder.mkdir()
    with scratch_folder(data, ".raw-tmp-") as scratch:
        assert sorted(p.name for p in data.iterdir()) == sorted([Path(scratch).name, *(f.name for f in kept)])
    assert sorted(p.name for p in data.iterdir()) == sorted(folder.name for folder in kept)


def test_remove_stale_scratch_returns_what_it_removed_and_accepts_a_missing_folder(tmp_path):
    assert remove_stale_scratch(tmp_path / "nowhere") == []
    killed = tmp_path / f".feedback-tmp-{_gone_pid()}-abc"
    killed.mkdir()
    (tmp_path / "raw").mkdir()
    assert remove_stale_scratch(tmp_path) == [killed]
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_a_scratch_folder_is_named_for_its_process_and_removed_after_use(tmp_path):
    with scratch_folder(tmp_path / "data", ".photos-tmp-") as scratch:
        assert Path(scratch).name.startswith(f".photos-tmp-{os.getpid()}-")
        assert remove_stale_scratch(tmp_path / "data") == []  # its own process is running
    assert not Path(scratch).exists()
    with pytest.raises(ValueError, match=r"a scratch folder's prefix is .<what>-tmp-, got 'scratch'"):
        scratch_folder(tmp_path, "scratch")
