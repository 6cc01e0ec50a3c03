"""A deploy bundle is written all or nothing (`staged_bundle`): a writer killed or failing half way leaves the
old bundle in place, and a bundle that lacks a part it promised is refused wherever it is found."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from support import REPO_ROOT
from support.fixtures_models import CLASSES, make_bundle, save_tiny_model

from fish_classifier.serving.bundle import BundleError, read_bundle
from fish_classifier.serving.bundle_writer import write_bundle
from fish_classifier.serving.bundle_publish import staged_bundle
from fish_classifier.serving.predictor import Predictor


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("old") / "deploy", model_name="old")


def _write(folder, model_path, *, name="new", parts=()):
    write_bundle(folder, model_path=model_path, classes=CLASSES, model_name=name, temperature=1.0, threshold=0.5,
                 top_k=5, metrics={}, data_hash="x", parts=parts)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_select_killed_just_after_bundle_json_leaves_the_old_bundle_served(tmp_path, model_path, old_bundle):
    deploy = shutil.copytree(old_bundle, tmp_path / "models" / "deploy")
    # As the select stage does: bundle.json promises model.tflite and unknown.npz, then the writer is killed.
    script = textwrap.dedent(f"""
        import os, signal
        from fish_classifier.serving.bundle_writer import write_bundle
        from fish_classifier.serving.bundle_publish import staged_bundle
        with staged_bundle({str(deploy)!r}) as folder:
            write_bundle(folder, model_path={model_path!r}, classes={CLASSES!r}, model_name="new", temperature=1.0,
                         threshold=0.5, top_k=5, metrics={{}}, data_hash="x", parts=("model.tflite", "unknown.npz"))
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert killed.returncode == -9, killed.stderr[-2000:]

    assert read_bundle(deploy).model_name == "old"  # the old bundle, whole, with its detector
    assert Predictor(deploy).detector is not None
    [partial] = (tmp_path / "models").glob(".deploy-tmp-*")
    assert (partial / "bundle.json").is_file() and not (partial / "unknown.npz").exists()
    # Even served by hand, the half bundle is refused, naming what it lacks.
    with pytest.raises(BundleError) as error:
        Predictor(partial)
    assert str(error.value) == (f"deploy bundle {partial} is incomplete: model.tflite and unknown.npz are missing; "
                                "rebuild the bundle with `dvc repro select`")

    with staged_bundle(deploy) as folder:  # the next run removes the dead writer's folder
        _write(folder, model_path)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["deploy"]
    assert read_bundle(deploy).model_name == "new"


def test_a_failing_writer_leaves_the_old_bundle_and_no_temporary_folder(tmp_path, model_path, old_bundle):
    deploy = shutil.copytree(old_bundle, tmp_path / "deploy")
    before = {p.name: p.read_bytes() for p in deploy.iterdir() if p.is_file()}
    with pytest.raises(RuntimeError, match="parity"):
        with staged_bundle(deploy) as folder:
            _write(folder, model_path)
            raise RuntimeError("parity check failed")
    assert {p.name: p.read_bytes() for p in deploy.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_a_bundle_missing_a_promised_part_is_never_published(tmp_path, model_path, old_bundle):
    deploy = shutil.copytree(old_bundle, tmp_path / "deploy")
    with pytest.raises(BundleError, match=r"is incomplete: unknown.npz is missing; rebuild the bundle"):
        with staged_bundle(deploy) as folder:
            _write(folder, model_path, parts=("unknown.npz",))  # and no add_unknown_detector
    assert read_bundle(deploy).model_name == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_a_finished_bundle_replaces_the_old_one_whole(tmp_path, model_path, old_bundle):
    deploy = shutil.copytree(old_bundle, tmp_path / "deploy")
    with staged_bundle(deploy) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(".deploy-tmp-")
        assert read_bundle(deploy).model_name == "old"  # served as it was while the new one is built
        _write(folder, model_path)
    bundle = read_bundle(deploy)
    assert bundle.model_name == "new" and bundle.unknown_path is None  # nothing of the old one stays
    assert not (deploy / "unknown.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_a_bundle_set_aside_by_a_publish_killed_between_its_renames_is_put_back(tmp_path, model_path, old_bundle):
    aside = shutil.copytree(old_bundle, tmp_path / f".deploy-old-{_dead_pid()}")
    with pytest.raises(RuntimeError):
        with staged_bundle(tmp_path / "deploy"):
            raise RuntimeError("stop")
    assert read_bundle(tmp_path / "deploy").model_name == "old" and not aside.exists()


def test_a_running_writers_folder_is_left_alone(tmp_path, model_path):
    running = tmp_path / f".deploy-tmp-{os.getppid()}"
    running.mkdir()
    with staged_bundle(tmp_path / "deploy") as folder:
        _write(folder, model_path)
    assert running.is_dir() and read_bundle(tmp_path / "deploy").model_name == "new"


def test_a_folder_that_is_not_a_bundle_is_never_replaced(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="refusing to overwrite .*precious: it is not empty and holds no bundle.json"):
        with staged_bundle(precious):
            pytest.fail("the block must not run")
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]
