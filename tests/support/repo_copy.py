"""Run the real DVC pipeline in a throwaway copy of this repository, as a fresh clone would have it."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from support import REPO_ROOT
from support.synthetic_images import dataset_files, image_bytes

TINY_CLASSES = ("animal fish", "fish sea_food red_mullet", "fish sea_food trout")
TINY_BACKBONE = {"weights": "none", "head_epochs": 2, "head_lr": 0.01, "fine_tune_layers": 2,
                 "fine_tune_epochs": 1, "fine_tune_lr": 1e-4, "fine_tune_schedule": "constant", "dropout": 0.1,
                 "patience": 2, "mirror_train": False, "augmented_views": 0, "label_smoothing": 0.1,
                 "mirror_average": False, "composites": False}


def copy_repo(dest: Path) -> Path:
    """Copy what git would hand a fresh clone (tracked files plus new, not-ignored ones) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():  # tracked files deleted in the working tree are skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
    subprocess.run(git + ["init", "-q"], cwd=dest, check=True)
    # Committed, as a clone is: DVC experiments and DVCLive need a revision to refer to.
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "copy"], cwd=dest, check=True)
    return dest


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # Stage commands say `python`: make it this interpreter, importing the copy's package.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo),
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def tiny_pipeline_repo(root: Path) -> Path:
    """A repo copy whose params train all six models in seconds on a 3-class zip of small images."""
    with zipfile.ZipFile(root / "Dataset.zip", "w") as archive:
        for name, data in dataset_files(TINY_CLASSES, {"train": 4, "val": 2, "test": 2}, size=(48, 48)).items():
            archive.writestr(f"Dataset/data/{name}", data)
    # Field photos (one per class, in <class folder>/ layout) and scenes to composite the studio classes onto.
    for name, data in dataset_files(TINY_CLASSES, {"test": 1}, size=(40, 40)).items():
        (root / "field" / Path(name).relative_to("test")).parent.mkdir(parents=True, exist_ok=True)
        (root / "field" / Path(name).relative_to("test")).write_bytes(data)
    for name, data in dataset_files(("n0_lakeside", "n1_goose"), {"train": 2}, size=(32, 32)).items():
        (root / "scenes" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "scenes" / name).write_bytes(data)
    # Photos that are no fish in the default outlier source's layout (Tiny ImageNet): the default data.outlier_exclude
    # leaves out its goldfish class and its val/ folder, so 4 photos make the pool.
    no_fish = {f"train/n02123045/images/{i}.JPEG": image_bytes(size=(32, 32), seed=300 + i) for i in range(4)}
    no_fish |= {"train/n01443537/images/0.JPEG": image_bytes(size=(32, 32), seed=310),
                "val/images/val_0.JPEG": image_bytes(size=(32, 32), seed=311)}
    for name, data in no_fish.items():
        (root / "no-fish" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "no-fish" / name).write_bytes(data)
    repo = copy_repo(root / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(source="../Dataset.zip", field_source="../field", background_source="../scenes",
                          outlier_source="../no-fish")
    params["composite"].update(per_class=2, size=48, background_classes=["*lakeside"])
    params["augment"]["min_per_class"] = 5
    params["train"]["batch_size"] = 8
    params["train"]["cnn"].update(image_size=32, filters=[4, 8, 8], epochs=2)
    for name in params["train"]["models"]:
        if name != "cnn":
            params["train"][name] = dict(TINY_BACKBONE, composites=name == "mobilenetv2")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))
