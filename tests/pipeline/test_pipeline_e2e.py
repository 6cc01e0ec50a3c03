"""End to end: the whole `dvc repro` (six models, evaluation, selection) on a tiny zip and tiny params, with an
exported feedback folder folded in, and `train.models` as the knob that trains, evaluates and selects among fewer
models."""

import hashlib
import json
import subprocess
from itertools import count
from pathlib import Path

import pandas as pd
import pytest
import yaml
from support.repo_copy import TINY_CLASSES as CLASSES
from support.repo_copy import dvc, ran_stages, tiny_pipeline_repo
from support.synthetic_images import image_bytes

from fish_classifier.data.feedback_set import FIELD, NOT_FISH, TRAIN, feedback_split
from fish_classifier.data.manifest import read_classes, read_manifest
from fish_classifier.evaluation.bundle_detector import hold_back
from fish_classifier.feedback.store import FeedbackStore, ModelAnswer
from fish_classifier.layout import (
    METRICS_FILE,
    MODEL_FILE,
    MODEL_METRICS_DIR,
    PER_CLASS_FILE,
    ZOO_DIR,
    metrics_dir,
    model_dir,
)
from fish_classifier.model.zoo import MODEL_NAMES

pytestmark = pytest.mark.slow
DATA_STAGES = {"download", "feedback", "prepare", "unknowns", "field", "outlier_source", "outliers", "composite",
               "composite_sets", "augment", "select"}
FEEDBACK_SEEDS = count(7000)  # photos no other test photo is near


def feedback_photos(store, label, part, n) -> dict[str, str]:
    """Mark `n` photos `label` in the feedback `store` and accept them, photos that the default share (0.5) sends
    to `part`; {sha256 of the upload: label}."""
    written = {}
    while len(written) < n:
        data = image_bytes(size=(48, 48), seed=next(FEEDBACK_SEEDS))
        digest = hashlib.sha256(data).hexdigest()
        if label == NOT_FISH or feedback_split(digest, 0.5) == part:
            record = store.add(data, label, ModelAnswer(CLASSES[0], 0.5, False, None), "e2e", species=CLASSES)
            store.set_status([record.id], "accepted")
            written[digest] = label
    return written


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def feedback(root):
    """Users' marks, accepted and exported with `fish-classifier feedback export` into a folder beside the repo:
    two train-bound and one field-bound photo, and one not-fish."""
    store = FeedbackStore(f"sqlite:///{root / 'feedback.db'}")
    marks = {TRAIN: feedback_photos(store, "fish sea_food trout", TRAIN, 2),
             FIELD: feedback_photos(store, "animal fish", FIELD, 1), NOT_FISH: feedback_photos(store, NOT_FISH, None, 1)}
    export(store, root / "feedback")
    return {"store": store, "folder": root / "feedback", **marks}


def export(store, folder):
    """`fish-classifier feedback export FOLDER`, the reviewer's command (it replaces an earlier export)."""
    subprocess.run(["fish-classifier", "feedback", "export", str(folder), "--db", store.url],
                   check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def repo(root, feedback):
    repo = tiny_pipeline_repo(root)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["feedback_source"] = "../feedback"  # relative to the repo root, as data.source is
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = dvc(repo, "repro")
    expected = set(DATA_STAGES)
    expected |= {f"{stage}@{name}" for stage in ("train", "evaluate") for name in MODEL_NAMES}
    assert ran_stages(first.stdout) == expected
    return repo


def test_every_model_is_trained_and_evaluated(repo):
    for name in MODEL_NAMES:
        assert (repo / model_dir(name) / MODEL_FILE).stat().st_size > 0
        metrics = json.loads((repo / metrics_dir(name) / METRICS_FILE).read_text())
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert "per_class" not in metrics  # each class's scores: per_class.csv, out of `dvc exp show`'s columns
        assert set(pd.read_csv(repo / metrics_dir(name) / PER_CLASS_FILE)["label"]) == set(CLASSES)
        assert (repo / model_dir(name) / "live" / "plots" / "metrics").is_dir()


def test_deploy_bundle_keeps_the_class_order_of_the_data(repo):
    deploy = repo / "models" / "deploy"
    bundle = json.loads((deploy / "bundle.json").read_text())
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert bundle["model"] in MODEL_NAMES
    assert (deploy / "model.keras").is_file()
    labels = json.loads((deploy / "labels.json").read_text())["classes"]
    assert labels == read_classes(repo / "data" / "classes.json")
    summary_text = (repo / "metrics" / "summary.md").read_text()
    assert "| Model |" in summary_text
    # No unknown-photo set in the tiny params: the figures are skipped, and summary.md says so; the
    # detector is in the bundle all the same, hashed with the models.
    assert "`data.unknown_source` is empty), so the figures of the unknown-photo detector are skipped" in summary_text
    assert "unknown.npz" in bundle["files"] and bundle["unknown"]["figures"] is None
    # The default select.unknown_outliers (auto) with a pool: relative, fitted on its 4 source photos and the
    # feedback's not-fish photo less those select.unknown_held_back keeps out, and summary.md says what it was
    # fitted on.
    pool = pd.read_csv(repo / "data" / "outliers" / "manifest.csv")["path"].tolist()
    share = yaml.safe_load((repo / "params.yaml").read_text())["select"]["unknown_held_back"]
    fitting, held = hold_back(pool, share)
    assert len(pool) == 5 and len(fitting) >= 2
    assert (bundle["unknown"]["method"], bundle["unknown"]["outliers"], bundle["unknown"]["outlier_photos"]) == (
        "relative_mahalanobis", "relative", len(fitting))
    assert {key: summary["detector"][key] for key in ("method", "outliers", "asked", "outlier_photos", "small_px",
                                                     "held_back_photos")} == {
        "method": "relative_mahalanobis", "outliers": "relative", "asked": "auto", "outlier_photos": len(fitting),
        "small_px": 64, "held_back_photos": len(held)}
    assert (f"Fitted on the train fish (as they are and brought down to 64 px, so that a small photo is not taken "
            f"for no fish) and on {len(fitting)} photos that are no fish (data/outliers: ") in summary_text
    assert summary  # the ranking that chose the bundle's model
    assert bundle["model"] in json.dumps(summary)


def test_every_model_is_scored_on_the_field_photos_and_the_summary_says_how_the_bundle_does(repo):
    for name in MODEL_NAMES:
        field = json.loads((repo / metrics_dir(name) / METRICS_FILE).read_text())["field"]
        assert field["images"] == len(CLASSES) + 1 and set(field["per_class"]) == set(CLASSES)  # + 1: feedback
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert set(summary["field"]) == {*MODEL_NAMES, "deploy bundle"}
    assert "## Field photos" in (repo / "metrics" / "summary.md").read_text()
    composites = pd.read_csv(repo / "data" / "composited" / "manifest.csv")
    assert set(composites["label"]) <= set(CLASSES) - {"animal fish", "animal fish bass"}  # no catch-all cut out


def test_metrics_show_reads_every_model(repo):
    shown = dvc(repo, "metrics", "show", "--json").stdout
    for name in MODEL_NAMES:
        assert (metrics_dir(name) / METRICS_FILE).as_posix() in shown


def test_plots_show_draws_the_photo_sheets_and_each_models_class_scores(repo):
    shown = json.loads(dvc(repo, "plots", "show", "--json").stdout)["data"]
    assert shown["data/near_duplicates.png"][0]["type"] == "image"
    for name in MODEL_NAMES:
        assert shown[(metrics_dir(name) / "misclassified.png").as_posix()][0]["type"] == "image"
        assert shown[(metrics_dir(name) / PER_CLASS_FILE).as_posix()][0]["type"] == "vega"


def test_nothing_changed_means_nothing_runs(repo):
    again = dvc(repo, "repro")
    assert ran_stages(again.stdout) == set()
    assert "Data and pipelines are up to date" in again.stdout


def test_one_models_params_retrain_only_that_model(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["vgg16"]["head_lr"] = 0.005
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = dvc(repo, "repro")
    # composite_sets reads every train.<model>.composites, so it runs again (a second); its lists stay the same.
    assert ran_stages(rerun.stdout) == {"composite_sets", "train@vgg16", "evaluate@vgg16", "select"}
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout


def test_new_composites_retrain_only_the_models_that_use_them(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["composite"]["jpeg_quality"] = [60, 90]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = ran_stages(dvc(repo, "repro").stdout)
    assert "composite" in rerun  # composite_sets and mobilenetv2 follow only when the composites' bytes changed
    # Only mobilenetv2 trains on composites (tiny params): no other model is trained again.
    assert rerun <= {"composite", "composite_sets", "train@mobilenetv2", "evaluate@mobilenetv2", "select"}
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout


def test_push_then_pull_gives_a_fresh_clone_the_bundle_with_nothing_to_rerun(repo, tmp_path):
    dvc(repo, "remote", "add", "--default", "team", str(tmp_path / "remote"))
    dvc(repo, "push")
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
    subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "trained"], cwd=repo, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "models" / "deploy").exists()

    dvc(clone, "pull")
    bundle = json.loads((clone / "models" / "deploy" / "bundle.json").read_text())
    assert bundle == json.loads((repo / "models" / "deploy" / "bundle.json").read_text())
    assert (clone / "metrics" / "summary.json").is_file()
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
    assert ran_stages(dvc(clone, "repro").stdout) == set()

    # Only the bundle, as a serving machine would take it (docs/scaling.md).
    server = tmp_path / "server"
    subprocess.run(["git", "clone", "-q", str(repo), str(server)], check=True)
    dvc(server, "pull", "models/deploy")
    assert json.loads((server / "models" / "deploy" / "bundle.json").read_text()) == bundle
    assert not (server / "data" / "prepared").exists() and not (server / "models" / "zoo").exists()

    # Without a checkout: an annotated version tag (GTO's NAME@vX.Y.Z; a lightweight one is not found)
    # names what `dvc artifacts get` fetches.
    subprocess.run(git + ["tag", "-a", "fish-classifier@v1.0.0", "-m", "fish-classifier v1.0.0"], cwd=repo, check=True)
    fetched = tmp_path / "fetched"
    got = dvc(tmp_path, "artifacts", "get", str(repo), "fish-classifier", "--rev", "v1.0.0", "-o", str(fetched))
    assert "Downloaded" in got.stdout
    assert json.loads((fetched / "bundle.json").read_text()) == bundle
    assert sorted(p.name for p in fetched.iterdir()) == sorted(p.name for p in (repo / "models" / "deploy").iterdir())


def test_exp_run_with_one_learning_rate_shows_in_metrics_diff(repo):
    subprocess.run(["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost", "commit", "-qam", "baseline"],
                   cwd=repo, check=False)  # nothing to commit when an earlier test already did
    committed_lr = yaml.safe_load((repo / "params.yaml").read_text())["train"]["cnn"]["lr"]
    # `3e-05` is how `dvc exp run -S` writes 0.00003; the stages must read it as a number.
    run = dvc(repo, "exp", "run", "-S", "train.cnn.lr=0.00003")
    assert ran_stages(run.stdout) == {"composite_sets", "train@cnn", "evaluate@cnn", "select"}
    assert "lr: 3e-05" in (repo / "params.yaml").read_text()

    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)
    scores = {name: (metrics_dir(name) / METRICS_FILE).as_posix() for name in MODEL_NAMES}
    assert scores["cnn"] in diff
    assert not {path for name, path in scores.items() if name != "cnn"} & set(diff)
    params_diff = json.loads(dvc(repo, "params", "diff", "--json").stdout)
    lr = params_diff["params.yaml"]["train.cnn.lr"]
    assert (lr["old"], lr["new"]) == (committed_lr, 3e-05) and committed_lr != 3e-05


def test_feedback_photos_train_or_are_scored_by_their_hash_and_not_fish_join_the_outlier_pool(repo, feedback):
    manifest = read_manifest(repo / "data" / "manifest.csv")
    from_feedback = manifest[manifest["origin"] == "feedback"]
    sent = {part: pd.read_csv(repo / "data" / "feedback" / part / "manifest.csv") for part in (TRAIN, NOT_FISH)}
    assert dict(zip(sent[TRAIN]["sha256"], sent[TRAIN]["label"])) == feedback[TRAIN]  # by the store's key
    assert sorted(from_feedback["label"]) == sorted(feedback[TRAIN].values())
    assert (from_feedback["split"] == "train").all() and (manifest["origin"] != "").all()
    assert json.loads((repo / "data" / "prepare_report.json").read_text())["feedback"]["photos"] == 2
    field = pd.read_csv(repo / "data" / "field" / "manifest.csv")
    assert field["origin"].value_counts().to_dict() == {"field_source": len(CLASSES), "feedback": 1}
    field_feedback = field[field["origin"] == "feedback"]
    assert [(Path(path).stem, label)
            for path, label in zip(field_feedback["path"], field_feedback["label"])] == list(feedback[FIELD].items())
    assert sent[NOT_FISH]["sha256"].tolist() == list(feedback[NOT_FISH])
    kept = hashlib.sha256((repo / sent[NOT_FISH]["path"][0]).read_bytes()).hexdigest()
    outliers = pd.read_csv(repo / "data" / "outliers" / "manifest.csv")
    assert outliers[outliers["origin"] == "feedback"]["sha256"].tolist() == [kept]
    # The source's photos, less the goldfish class and val/ that the default data.outlier_exclude leaves out.
    sources = outliers[outliers["origin"] == "outlier_source"]["path"]
    assert sorted(Path(path).name for path in sources) == [f"{i}.JPEG" for i in range(4)]
    assert all("/train/n02123045/images/" in path for path in sources)


def test_the_outlier_source_is_drawn_again_only_when_its_own_settings_change(repo):
    params_file = repo / "params.yaml"
    committed, before = params_file.read_text(), set(json.loads(dvc(repo, "status", "--json").stdout))
    try:
        for key, value, expected in (("prepare", {"near_duplicate_distance": 3}, "outliers"),
                                     ("data", {"outlier_photos": 3}, "outlier_source")):
            params = yaml.safe_load(committed)
            params[key].update(value)
            params_file.write_text(yaml.safe_dump(params, sort_keys=False))
            changed = set(json.loads(dvc(repo, "status", "--json").stdout)) - before
            # A new near-duplicate rule re-checks the pool, never the download; a new draw is drawn again.
            assert expected in changed and ("outlier_source" in changed) == (expected == "outlier_source"), changed
    finally:
        params_file.write_text(committed)
    assert set(json.loads(dvc(repo, "status", "--json").stdout)) == before


def test_a_new_field_bound_feedback_photo_re_runs_the_field_scores_and_never_prepare_or_training(repo, feedback):
    added = feedback_photos(feedback["store"], "fish sea_food trout", FIELD, 1)
    export(feedback["store"], feedback["folder"])
    # DVC sees data.feedback_source, not the folder's photos: the stage is run by hand, as docs/feedback.md says.
    assert ran_stages(dvc(repo, "repro", "-f", "-s", "feedback").stdout) == {"feedback"}
    status = dvc(repo, "status", "--json").stdout
    changed = set(json.loads(status))
    assert changed == {"field"}, status  # prepare (data/feedback/train) and outliers (not-fish) saw no change
    assert ran_stages(dvc(repo, "repro", "field").stdout) == {"field"}
    field = pd.read_csv(repo / "data" / "field" / "manifest.csv")
    assert next(iter(added)) in {Path(path).stem for path in field["path"]}  # named by the store's key
    waiting = set(json.loads(dvc(repo, "status", "--json").stdout))
    assert waiting == {f"evaluate@{name}" for name in MODEL_NAMES} | {"select"}  # scored again; trained as before


def test_train_models_picks_the_models_that_are_trained_evaluated_and_selected_among(tmp_path):
    repo = tiny_pipeline_repo(tmp_path)
    run = dvc(repo, "exp", "run", "-S", "train.models=[cnn,mobilenetv2]")
    chosen = {"cnn", "mobilenetv2"}
    assert ran_stages(run.stdout) == DATA_STAGES | {f"{stage}@{name}" for stage in ("train", "evaluate") for name in chosen}
    assert {p.name for p in (repo / ZOO_DIR).iterdir()} == chosen
    assert {p.name for p in (repo / MODEL_METRICS_DIR).iterdir()} == chosen
    bundle = json.loads((repo / "models" / "deploy" / "bundle.json").read_text())
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert bundle["model"] in chosen
    assert set(summary["models"]) == chosen
