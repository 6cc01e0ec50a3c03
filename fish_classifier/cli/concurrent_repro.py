"""`dvc repro` with the independent `train@<model>` stages run N at a time.

`dvc repro` runs one stage at a time, and two `dvc repro` processes collide on
DVC's repository lock. So this does what `dvc repro` would, in three steps:

1. `dvc repro` the stages the training stages depend on (download, prepare, augment);
2. run the commands of the training stages that are out of date, N at a time, as
   DVC would (outputs removed first, from the repository root), each limited to its
   share of the CPU threads and with GPU memory growth on;
3. `dvc commit --force` those stages, which hashes their outputs into the cache and
   writes `dvc.lock` exactly as a `dvc repro` of them would, then `dvc repro` the rest.
"""

import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import networkx as nx
from dvc.repo import Repo

from fish_classifier.cpus import usable_cpus

TRAIN_PREFIX = "train@"


class ReproError(RuntimeError):
    """A stage failed; the message names it and ends with its output."""


_SAY_LOCK = threading.Lock()


def say(message: str) -> None:
    # One thread at a time: print() writes the message and its newline separately, so two training threads
    # starting together could merge their "running" lines into one. Flushed, so it interleaves rightly with
    # the dvc subprocesses' output.
    with _SAY_LOCK:
        print(message, flush=True)


def repro(jobs: int, root: str | Path = ".", log=say) -> list[str]:
    """Bring the whole pipeline up to date, training up to `jobs` models at once; return the models trained."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    root = Path(root)
    with Repo(str(root)) as repo:
        graph = repo.index.graph
        training = [stage for stage in repo.index.stages if stage.addressing.startswith(TRAIN_PREFIX)]
        # DVC's graph points from a stage to the stages it depends on.
        upstream = {dep for stage in training for dep in nx.descendants(graph, stage)} - set(training)
    if upstream:
        _dvc(root, "repro", *sorted(stage.addressing for stage in upstream))

    with Repo(str(root)) as repo:
        stale = [stage for stage in repo.index.stages
                 if stage.addressing.startswith(TRAIN_PREFIX) and repo.status(targets=[stage.addressing])]
    names = [stage.addressing for stage in stale]
    if stale:
        log(f"training {len(stale)} models, {jobs} at a time: {', '.join(names)}")
        env = thread_limited_env(jobs)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            failures = [f for f in pool.map(lambda stage: _run_stage(stage, root, env, log), stale) if f]
        if failures:
            raise ReproError("\n\n".join(failures))
        _dvc(root, "commit", "--force", *names)
    _dvc(root, "repro")
    return names


def thread_limited_env(jobs: int) -> dict[str, str]:
    """Each of `jobs` TensorFlow processes gets an equal share of the cores, and grows GPU memory on demand."""
    threads = max(1, usable_cpus() // jobs)
    return {
        **os.environ,
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }


def _run_stage(stage, root: Path, env: dict, log) -> str | None:
    for out in stage.outs:
        path = root / out.def_path
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log(f"running {stage.addressing}: {stage.cmd}")
    result = subprocess.run(stage.cmd, shell=True, cwd=root, env=env, capture_output=True, text=True)
    log(f"finished {stage.addressing} (exit {result.returncode})")
    if result.returncode != 0:
        return f"{stage.addressing} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
    return None


def _dvc(root: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root)
    if result.returncode != 0:
        raise ReproError(f"dvc {' '.join(args)} failed (exit {result.returncode})")
