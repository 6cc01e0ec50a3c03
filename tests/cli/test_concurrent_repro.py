"""`fish-classifier repro --jobs 2` trains models side by side and leaves DVC as a plain `dvc repro` would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.repo_copy import dvc, ran_stages, tiny_pipeline_repo

from fish_classifier.cli import concurrent_repro
from fish_classifier.cli.concurrent_repro import thread_limited_env

pytestmark = pytest.mark.slow


def test_each_job_gets_its_share_of_the_threads(monkeypatch):
    monkeypatch.setattr(concurrent_repro, "usable_cpus", lambda: 8)
    env = thread_limited_env(4)
    assert env["TF_NUM_INTRAOP_THREADS"] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert thread_limited_env(16)["TF_NUM_INTRAOP_THREADS"] == "1"


def test_two_at_a_time_then_dvc_has_nothing_to_do(tmp_path):
    repo = tiny_pipeline_repo(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "-m", "fish_classifier", "repro", "--jobs", "2"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout.splitlines()
    assert "training 6 models, 2 at a time" in result.stdout
    # Concurrency: at some point two training commands were running at once.
    running, most = 0, 0
    for line in log:
        running += line.startswith("running train@") - line.startswith("finished train@")
        most = max(most, running)
    assert most == 2
    assert (repo / "models" / "deploy" / "bundle.json").is_file()

    status = dvc(repo, "status")
    assert "Data and pipelines are up to date" in status.stdout
    again = dvc(repo, "repro")
    assert ran_stages(again.stdout) == set()
