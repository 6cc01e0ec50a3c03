"""Every stage script has a `main()` and a `--help` that says what it reads and writes, and starts no work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO_ROOT as REPO

STAGES = sorted(path.name for path in (REPO / "stages").glob("*.py"))


def _run(tmp_path, script, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_scripts_checked_here_are_the_ones_dvc_yaml_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    scripts = {Path(stage.get("do", stage)["cmd"].split()[1]).name for stage in stages.values()}
    assert scripts == set(STAGES)


@pytest.mark.slow
@pytest.mark.parametrize("script", STAGES)
def test_help_says_what_the_stage_reads_and_writes_and_touches_nothing(tmp_path, script):
    run = _run(tmp_path, script, "--help")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("usage: ")
    first_line = (REPO / "stages" / script).read_text().split('"""')[1].splitlines()[0]
    assert first_line in run.stdout  # the module's docstring: what the stage reads and writes
    assert list(tmp_path.iterdir()) == []  # no params read, no data/, models/ or metrics/ made


@pytest.mark.slow
def test_a_model_outside_the_zoo_is_a_usage_error_before_any_work(tmp_path):
    """The zoo's one check of a name, with the message params.yaml's train.models gets (tests/test_params.py).
    evaluate takes any name: it scores the model file of that name that train wrote."""
    run = _run(tmp_path, "train.py", "resnet")
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1].endswith(
        "error: argument model: unknown model 'resnet', expected one of: cnn, vgg16, resnet50, mobilenetv2, "
        "inceptionv3, efficientnetb0")
    assert list(tmp_path.iterdir()) == []
