import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO_ROOT

from fish_classifier.data.augment import AugmentSettings
from fish_classifier.data.composite import CompositeSettings, CompositeSourceSettings, CompositeUsers
from fish_classifier.data.field_set import FieldSetSettings
from fish_classifier.data.manifest import CatchAllLabels
from fish_classifier.data.download import DownloadSettings
from fish_classifier.data.feedback_set import FeedbackSetSettings
from fish_classifier.data.outlier_draw import OutlierSetSettings
from fish_classifier.data.prepare import PrepareSettings
from fish_classifier.data.unknown_set import UnknownSetSettings
from fish_classifier.evaluation.metrics import EvaluateSettings
from fish_classifier.evaluation.selection import SelectSettings
from fish_classifier import params as params_module
from fish_classifier.params import Base, ParamsError, load_params, read_params, stage_params
from fish_classifier.training.settings import TrainedModels, TrainSettings

PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
SOURCE_RULE = "a non-empty string: gdrive://<folder id>, https://host/file.zip or path/to/file.zip"
MISSING = object()

# What each stage script passes to stage_params: the sections it reads, and their schemas.
STAGES = {
    "download": {"data": DownloadSettings},
    "unknowns": {"data": UnknownSetSettings},
    "field": {"data": FieldSetSettings},
    "feedback": {"data": FeedbackSetSettings},
    "outlier_source": {"base": Base, "data": OutlierSetSettings},
    "outliers": {"prepare": PrepareSettings},
    "composite": {"base": Base, "data": CompositeSourceSettings, "composite": CompositeSettings},
    "composite_sets": {"train": CompositeUsers},
    "prepare": {"prepare": PrepareSettings},
    "augment": {"base": Base, "augment": AugmentSettings},
    **{f"train@{name}": {"base": Base, "augment": AugmentSettings, "train": TrainSettings.for_model(name)}
       for name in PARAMS["train"]["models"]},
    "evaluate": {"evaluate": EvaluateSettings, "data": CatchAllLabels},
    "select": {"train": TrainedModels, "select": SelectSettings, "data": CatchAllLabels},
}


def test_exponent_floats_as_dvc_exp_run_writes_them_are_floats(tmp_path):
    # `dvc exp run -S train.mobilenetv2.fine_tune_lr=0.00003` writes `3e-05`; YAML 1.1 would read a string.
    path = tmp_path / "params.yaml"
    path.write_text(
        "train:\n"
        "  lr: 3e-05\n"
        "  big: 1E+3\n"
        "  dotted: 1.5e-4\n"
        "  plain: 0.001\n"
        "  epochs: 12\n"
        "  name: e5\n"
        "  version: '1e5'\n"
    )
    train = load_params(path)["train"]
    assert train == {"lr": 3e-05, "big": 1000.0, "dotted": 1.5e-4, "plain": 0.001, "epochs": 12,
                     "name": "e5", "version": "1e5"}
    assert [type(train[k]) for k in ("lr", "big", "dotted", "plain", "epochs")] == [float, float, float, float, int]


def test_the_projects_params_load_with_every_learning_rate_a_number():
    train = load_params()["train"]
    for model in train["models"]:
        for key, value in train[model].items():
            if key.endswith("lr"):
                assert isinstance(value, float), (model, key, value)


# --- params.yaml is checked before any work starts ---------------------------------------------------


def edited(changes: dict) -> dict:
    """The project's params with `changes` ({"dotted.key": value, or MISSING to delete it}) applied."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for key, value in changes.items():
        *path, last = key.split(".")
        section = params
        for part in path:
            section = section[part]
        if value is MISSING:
            del section[last]
        else:
            section[last] = value
    return params


def problems(tmp_path, stage: str, changes: dict) -> list[str]:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(edited(changes)))
    with pytest.raises(ParamsError) as refused:
        read_params(path, **STAGES[stage])
    return refused.value.problems


@pytest.mark.parametrize("stage", STAGES)
def test_the_projects_params_fit_every_stage(stage):
    read_params(REPO_ROOT / "params.yaml", **STAGES[stage])


# One row per rule: the stage that reads the key, the key, a value it refuses, and the exact message.
RULES = [
    ("augment", "base.seed", -1,
     "base.seed must be an integer >= 0, got -1"),
    ("download", "data.source", 123,
     f"data.source must be {SOURCE_RULE}, got 123"),
    ("download", "data.source", "",
     f"data.source must be {SOURCE_RULE}, got ''"),
    ("download", "data.drive_file", MISSING,
     "data.drive_file is missing; it must be a non-empty string: the file to take from the Drive folder"),
    ("download", "data.max_unpacked_mb", 0,
     "data.max_unpacked_mb must be a number > 0, got 0"),
    ("download", "data.max_compression_ratio", "high",
     "data.max_compression_ratio must be a number > 0, got 'high'"),
    ("unknowns", "data.unknown_source", 5,
     "data.unknown_source must be a string: a zip or folder of photos that are none of the species, or empty for "
     "none, got 5"),
    ("unknowns", "data.max_unpacked_mb", -5,
     "data.max_unpacked_mb must be a number > 0, got -5"),
    ("prepare", "prepare.near_duplicate_distance", -1,
     "prepare.near_duplicate_distance must be an integer >= 0, got -1"),
    ("prepare", "prepare.hash_size", 1,
     "prepare.hash_size must be an integer >= 2, got 1"),
    ("prepare", "prepare.display_names", ["Horse mackerel"],
     "prepare.display_names must be a mapping of label: display name ({} for none), got ['Horse mackerel']"),
    ("prepare", "prepare.duplicate_pairs_shown", 0,
     "prepare.duplicate_pairs_shown must be an integer >= 1, got 0"),
    ("augment", "augment.min_per_class", 2.5,
     "augment.min_per_class must be an integer >= 0, got 2.5"),
    ("augment", "augment.max_rotation", 181,
     "augment.max_rotation must be a number within [0, 180] (degrees either way), got 181"),
    ("augment", "augment.max_zoom", 1,
     "augment.max_zoom must be a number within [0, 1) (fraction zoomed in, at most), got 1"),
    ("augment", "augment.brightness", -0.2,
     "augment.brightness must be a number within [0, 1) (+/- fraction), got -0.2"),
    ("augment", "augment.contrast", None,
     "augment.contrast must be a number within [0, 1) (+/- fraction), got None"),
    ("train@cnn", "train.strategy", "tpu",
     "train.strategy must be one of: auto, default, mirrored, multi_worker, got 'tpu'"),
    ("train@cnn", "train.mixed_precision", "yes",
     "train.mixed_precision must be true or false, got 'yes'"),
    ("train@cnn", "train.frozen_pass", "onnx",
     "train.frozen_pass must be one of: auto, litert, keras, got 'onnx'"),
    ("train@cnn", "train.batch_size", 0,
     "train.batch_size must be an integer >= 1, got 0"),
    ("train@cnn", "train.class_weight", 1,
     "train.class_weight must be true or false, got 1"),
    ("train@cnn", "train.cnn.image_size", 0,
     "train.cnn.image_size must be an integer >= 1, got 0"),
    ("train@cnn", "train.cnn.filters", [],
     "train.cnn.filters must be a non-empty list of integers >= 1 (one conv block each), got []"),
    ("train@cnn", "train.cnn.dropout", 1.5,
     "train.cnn.dropout must be a number within [0, 1), got 1.5"),
    ("train@cnn", "train.cnn.epochs", -1,
     "train.cnn.epochs must be an integer >= 1, got -1"),
    ("train@cnn", "train.cnn.lr", 0,
     "train.cnn.lr must be a number > 0, got 0"),
    ("train@cnn", "train.cnn.patience", -1,
     "train.cnn.patience must be an integer >= 0, got -1"),
    ("train@cnn", "train.cnn.augment", "no",
     "train.cnn.augment must be true or false, got 'no'"),
    ("train@cnn", "train.cnn.convs_per_block", 0,
     "train.cnn.convs_per_block must be an integer >= 1, got 0"),
    ("train@cnn", "train.cnn.lr_schedule", "step",
     "train.cnn.lr_schedule must be one of: constant, cosine, got 'step'"),
    ("train@cnn", "train.cnn.label_smoothing", 1.0,
     "train.cnn.label_smoothing must be a number within [0, 1), got 1.0"),
    ("train@cnn", "train.cnn.augment_ranges.max_rotation", 181,
     "train.cnn.augment_ranges.max_rotation must be a number within [0, 180] (degrees either way), got 181"),
    ("train@cnn", "train.cnn.augment_ranges.max_zoom", 1,
     "train.cnn.augment_ranges.max_zoom must be a number within [0, 1) (fraction zoomed in, at most), got 1"),
    ("train@cnn", "train.cnn.augment_ranges.brightness", -0.2,
     "train.cnn.augment_ranges.brightness must be a number within [0, 1) (+/- fraction), got -0.2"),
    ("train@cnn", "train.cnn.augment_ranges.contrast", None,
     "train.cnn.augment_ranges.contrast must be a number within [0, 1) (+/- fraction), got None"),
    ("train@mobilenetv2", "train.mobilenetv2.weights", "no/such/weights.h5",
     "train.mobilenetv2.weights must be imagenet, none or the path of an existing .h5 weights file, got "
     "'no/such/weights.h5'"),
    ("train@mobilenetv2", "train.mobilenetv2.head_epochs", 0,
     "train.mobilenetv2.head_epochs must be an integer >= 1, got 0"),
    ("train@mobilenetv2", "train.mobilenetv2.head_lr", -0.001,
     "train.mobilenetv2.head_lr must be a number > 0, got -0.001"),
    ("train@mobilenetv2", "train.mobilenetv2.fine_tune_layers", -3,
     "train.mobilenetv2.fine_tune_layers must be an integer >= 0, got -3"),
    ("train@mobilenetv2", "train.mobilenetv2.fine_tune_epochs", -1,
     "train.mobilenetv2.fine_tune_epochs must be an integer >= 0, got -1"),
    ("train@mobilenetv2", "train.mobilenetv2.fine_tune_lr", "x",
     "train.mobilenetv2.fine_tune_lr must be a number > 0, got 'x'"),
    ("train@mobilenetv2", "train.mobilenetv2.fine_tune_schedule", "linear",
     "train.mobilenetv2.fine_tune_schedule must be one of: constant, cosine, got 'linear'"),
    ("train@mobilenetv2", "train.mobilenetv2.dropout", 1.5,
     "train.mobilenetv2.dropout must be a number within [0, 1), got 1.5"),
    ("train@mobilenetv2", "train.mobilenetv2.patience", -1,
     "train.mobilenetv2.patience must be an integer >= 0, got -1"),
    ("train@mobilenetv2", "train.mobilenetv2.mirror_train", "true",
     "train.mobilenetv2.mirror_train must be true or false, got 'true'"),
    ("train@mobilenetv2", "train.mobilenetv2.augmented_views", -1,
     "train.mobilenetv2.augmented_views must be an integer >= 0, got -1"),
    ("train@mobilenetv2", "train.mobilenetv2.label_smoothing", -0.1,
     "train.mobilenetv2.label_smoothing must be a number within [0, 1), got -0.1"),
    ("train@mobilenetv2", "train.mobilenetv2.mirror_average", None,
     "train.mobilenetv2.mirror_average must be true or false, got None"),
    ("train@mobilenetv2", "train.mobilenetv2.composites", "yes",
     "train.mobilenetv2.composites must be true or false, got 'yes'"),
    ("train@cnn", "train.cnn.composites", 1,
     "train.cnn.composites must be true or false, got 1"),
    ("field", "data.field_source", 5,
     "data.field_source must be a string: a zip or folder of <class folder>/<photo>, or empty for none, got 5"),
    ("feedback", "data.feedback_source", None,
     "data.feedback_source must be a string: a folder or zip of <species>/<photo> and not-fish/<photo>, a database "
     "URL (sqlite:///..., postgresql://...), or empty for none, got None"),
    ("feedback", "data.feedback_train_share", 1.5,
     "data.feedback_train_share must be a number within [0, 1]: the share of feedback fish photos that trains, got 1.5"),
    ("outlier_source", "data.outlier_source", 3,
     "data.outlier_source must be a string: a zip, a folder or an https URL to a zip of photos that are no fish, or "
     "empty for none, got 3"),
    ("outlier_source", "data.outlier_photos", -1, "data.outlier_photos must be an integer >= 0, got -1"),
    ("outlier_source", "data.outlier_exclude", "*fish*",
     "data.outlier_exclude must be a list of folder-name patterns (fnmatch, any case), [] for none, got '*fish*'"),
    ("outlier_source", "data.outlier_exclude", ["*fish*", 7],
     "data.outlier_exclude must be a list of folder-name patterns (fnmatch, any case), [] for none, got ['*fish*', 7]"),
    ("composite", "data.background_source", None,
     "data.background_source must be a string: a zip or folder of background photos, or empty for none, got None"),
    ("composite", "data.catch_all_labels", "animal fish",
     "data.catch_all_labels must be a list of class labels (strings), got 'animal fish'"),
    ("evaluate", "data.other_fish_labels", "animal fish",
     "data.other_fish_labels must be a list of class labels (strings), got 'animal fish'"),
    ("composite", "composite.per_class", -1, "composite.per_class must be an integer >= 0, got -1"),
    ("composite", "composite.size", 16, "composite.size must be an integer >= 32, got 16"),
    ("composite", "composite.background_classes", "*lake",
     "composite.background_classes must be a list of folder-name patterns (fnmatch), [] for all, got '*lake'"),
    ("composite", "composite.mask_distance", 0,
     "composite.mask_distance must be a number > 0 (CIELAB distance from the border's colours), got 0"),
    ("composite", "composite.min_mask_share", 0, "composite.min_mask_share must be a number within (0, 1), got 0"),
    ("composite", "composite.max_mask_share", 1.5, "composite.max_mask_share must be a number within (0, 1], got 1.5"),
    ("composite", "composite.min_scale", 0,
     "composite.min_scale must be a number within (0, 2] (the fish's longer side over the composite's side), got 0"),
    ("composite", "composite.max_scale", 3, "composite.max_scale must be a number within (0, 2], got 3"),
    ("composite", "composite.max_rotation", 200,
     "composite.max_rotation must be a number within [0, 180] (degrees either way), got 200"),
    ("composite", "composite.brightness", 1, "composite.brightness must be a number within [0, 1) (+/- fraction), got 1"),
    ("composite", "composite.contrast", -1, "composite.contrast must be a number within [0, 1) (+/- fraction), got -1"),
    ("composite", "composite.saturation", 1,
     "composite.saturation must be a number within [0, 1) (+/- fraction), got 1"),
    ("composite", "composite.occlusion", 2,
     "composite.occlusion must be a number within [0, 1] (chance that a patch covers part of the fish), got 2"),
    ("composite", "composite.soften", 2, "composite.soften must be a number within [0, 1] (chance that a composite "
                                         "is brought down to its background's sharpness), got 2"),
    ("composite", "composite.catch_all", "no", "composite.catch_all must be true or false, got 'no'"),
    ("composite", "composite.scene_share", 1.5, "composite.scene_share must be a number within [0, 1] (share of "
                                                "composites put onto a train photo of a class naming no species), got 1.5"),
    ("composite", "composite.max_blur", -1, "composite.max_blur must be a number >= 0 (px, Gaussian radius), got -1"),
    ("composite", "composite.jpeg_quality", [10, 100],
     "composite.jpeg_quality must be [lowest, highest], integers within [1, 95], got [10, 100]"),
    ("composite", "composite.shown", -1, "composite.shown must be an integer >= 0, got -1"),
    ("evaluate", "evaluate.batch_size", 0,
     "evaluate.batch_size must be an integer >= 1, got 0"),
    ("evaluate", "evaluate.ece_bins", 0,
     "evaluate.ece_bins must be an integer >= 1, got 0"),
    ("evaluate", "evaluate.top_k", 0,
     "evaluate.top_k must be an integer >= 1, got 0"),
    ("evaluate", "evaluate.temperature_prior_sigma", 0,
     "evaluate.temperature_prior_sigma must be a number > 0, got 0"),
    ("evaluate", "evaluate.gallery_size", 0,
     "evaluate.gallery_size must be an integer >= 1, got 0"),
    ("select", "train.models", [],
     "train.models must be a non-empty list of distinct model names, got []"),
    ("select", "train.models", ["cnn", "resnet"],  # the zoo's one check of a name, as a stage's argument gets it
     "train.models: unknown model 'resnet', expected one of: cnn, vgg16, resnet50, mobilenetv2, inceptionv3, "
     "efficientnetb0"),
    ("select", "train.models", ["cnn", "vgg16", "cnn"],
     "train.models must be a non-empty list of distinct model names, got ['cnn', 'vgg16', 'cnn']"),
    ("select", "train.models", "cnn",
     "train.models: Input should be a valid list, got 'cnn'"),
    ("select", "select.metric", "f1",
     "select.metric must be one of: accuracy, macro_precision, macro_recall, macro_f1, got 'f1'"),
    ("select", "select.threshold_rule", "median",
     "select.threshold_rule must be one of: val_flag_rate, fixed, got 'median'"),
    ("select", "select.val_flag_rate", 1.5,
     "select.val_flag_rate must be a number within [0, 1], got 1.5"),
    ("select", "select.fixed_threshold", "high",
     "select.fixed_threshold must be a number within [0, 1], got 'high'"),
    ("select", "select.top_k", 0,
     "select.top_k must be an integer >= 1, got 0"),
    ("select", "select.serving_parity_images", 0,
     "select.serving_parity_images must be an integer >= 1, got 0"),
    ("select", "select.example_size", 0,
     "select.example_size must be an integer >= 1, got 0"),
    ("select", "select.unknown_method", "svm",
     "select.unknown_method must be one of: knn, mahalanobis, energy, got 'svm'"),
    ("select", "select.unknown_power", 0,
     "select.unknown_power must be a number within (0, 1], got 0"),
    ("select", "select.unknown_k", 0,
     "select.unknown_k must be an integer >= 1, got 0"),
    ("select", "select.unknown_val_flag_rate", 2,
     "select.unknown_val_flag_rate must be a number within [0, 1], got 2"),
    ("select", "select.unknown_histogram_bins", 0,
     "select.unknown_histogram_bins must be an integer >= 1, got 0"),
    ("select", "select.batch_size", -32,
     "select.batch_size must be an integer >= 1, got -32"),
    ("select", "select.unknown_outliers", "pool",
     "select.unknown_outliers must be one of: ignore, relative, auto, got 'pool'"),
    ("select", "select.unknown_small_px", 8, "select.unknown_small_px must be an integer >= 16, got 8"),
    ("select", "select.unknown_held_back", 1.5, "select.unknown_held_back must be a number within [0, 1], got 1.5"),
    ("select", "select.unknown_imagenet_weight", -0.5,
     "select.unknown_imagenet_weight must be a number >= 0, got -0.5"),
    ("select", "select.catch_all_doubt_rate", 1.5, "select.catch_all_doubt_rate must be a number within [0, 1], got 1.5"),
]


@pytest.mark.parametrize(("stage", "key", "value", "message"), RULES, ids=[f"{r[1]}={r[2]!r}" for r in RULES])
def test_a_bad_value_is_refused_with_the_key_the_value_and_what_is_allowed(tmp_path, stage, key, value, message):
    assert problems(tmp_path, stage, {key: value}) == [message]


def test_relative_outliers_need_the_mahalanobis_detector(tmp_path):
    assert problems(tmp_path, "select", {"select.unknown_outliers": "relative", "select.unknown_method": "knn"}) == [
        "select.unknown_outliers must be ignore with unknown_method knn (relative scores against mahalanobis), "
        "got 'relative'"]
    path = tmp_path / "relative.yaml"
    path.write_text(yaml.safe_dump(edited({"select.unknown_outliers": "relative"})))
    assert read_params(path, **STAGES["select"]).select.unknown.outliers == "relative"


def test_every_key_of_params_yaml_has_a_rule_row():
    """Every leaf key of the project's params.yaml, but the display names (any mapping), is refused in RULES."""
    def leaves(section, prefix=""):
        for key, value in section.items():
            if isinstance(value, dict) and key != "display_names":
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    backbone_keys = {key.split(".", 2)[2] for _, key, _, _ in RULES if key.startswith("train.mobilenetv2.")}
    checked = {key for _, key, _, _ in RULES}
    for key in leaves(PARAMS):
        parts = key.split(".")
        if parts[0] == "train" and len(parts) == 3 and parts[1] not in ("cnn", "mobilenetv2"):
            assert parts[2] in backbone_keys, key  # every backbone shares mobilenetv2's schema
        else:
            assert key in checked, key


def _numeric_leaves(section, prefix=""):
    """(dotted key, value) of every number in the project's params.yaml (lists and the display names aside)."""
    for key, value in section.items():
        if isinstance(value, dict):
            yield from _numeric_leaves(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def _stages_reading(key: str) -> list[str]:
    """The stages whose schemas hold `key` (`train.cnn.lr` is read by train@cnn as its `model` section)."""
    section, *rest = key.split(".")
    return [stage for stage, sections in STAGES.items()
            if section in sections and params_module._field(sections[section], tuple(rest)) is not None]


NUMERIC_LEAVES = dict(_numeric_leaves(PARAMS))
NON_FINITE = [(key, value) for key in NUMERIC_LEAVES for value in (float("nan"), float("inf"))]


@pytest.mark.parametrize(("key", "value"), NON_FINITE, ids=[f"{key}={value}" for key, value in NON_FINITE])
def test_no_number_of_params_yaml_may_be_nan_or_infinite(tmp_path, key, value):
    """`.inf` passes `> 0`: `train.cnn.lr: .inf` once trained a model of NaNs that exited 0. Every number is
    refused as nan or infinite by every stage that reads it, naming the key and the value."""
    stages = _stages_reading(key)
    assert stages, f"no stage reads {key}"
    for stage in stages:
        [problem] = problems(tmp_path, stage, {key: value})
        assert problem.startswith(f"{key} must be ") and problem.endswith(f", got {value!r}"), (stage, problem)
        if isinstance(NUMERIC_LEAVES[key], float):
            assert f"{key} must be a finite number" in problem, (stage, problem)


NON_FINITE_RULES = [
    ("train@cnn", "train.cnn.lr", float("inf"), "train.cnn.lr must be a finite number > 0, got inf"),
    ("train@cnn", "train.cnn.lr", float("-inf"), "train.cnn.lr must be a finite number > 0, got -inf"),
    ("train@vgg16", "train.vgg16.fine_tune_lr", float("nan"),
     "train.vgg16.fine_tune_lr must be a finite number > 0, got nan"),
    ("download", "data.max_unpacked_mb", float("inf"), "data.max_unpacked_mb must be a finite number > 0, got inf"),
    ("composite", "composite.max_blur", float("inf"),
     "composite.max_blur must be a finite number >= 0 (px, Gaussian radius), got inf"),
    ("train@cnn", "train.cnn.dropout", float("nan"), "train.cnn.dropout must be a finite number within [0, 1), "
                                                     "got nan"),
    ("train@cnn", "train.cnn.epochs", float("inf"), "train.cnn.epochs must be an integer >= 1, got inf"),
]


@pytest.mark.parametrize(("stage", "key", "value", "message"), NON_FINITE_RULES,
                         ids=[f"{r[1]}={r[2]}" for r in NON_FINITE_RULES])
def test_nan_and_infinity_are_refused_by_name(tmp_path, stage, key, value, message):
    assert problems(tmp_path, stage, {key: value}) == [message]


def test_a_cnn_image_too_small_for_its_blocks_is_refused(tmp_path):
    assert problems(tmp_path, "train@cnn", {"train.cnn.image_size": 16, "train.cnn.filters": [8, 8, 8, 8, 8]}) == [
        "train.cnn.image_size must be an integer >= 32 with 5 filters (each conv block halves the image), got 16"]


def test_a_misspelt_key_is_named_with_the_keys_its_section_has(tmp_path):
    changes = {"train.mobilenetv2.fine_tune_epoch": 5, "train.mobilenetv2.fine_tune_epochs": MISSING}
    assert problems(tmp_path, "train@mobilenetv2", changes) == [
        "train.mobilenetv2.fine_tune_epochs is missing; it must be an integer >= 0",
        "train.mobilenetv2.fine_tune_epoch is not a known key (a typo?), got 5; the keys of train.mobilenetv2 are: "
        "weights, head_epochs, head_lr, fine_tune_layers, fine_tune_epochs, fine_tune_lr, fine_tune_schedule, "
        "dropout, patience, mirror_train, augmented_views, label_smoothing, mirror_average, composites",
    ]


def test_a_missing_or_malformed_section_is_named_with_its_keys(tmp_path):
    assert problems(tmp_path, "evaluate", {"evaluate": 5}) == [
        "evaluate must be a mapping with the keys: batch_size, top_k, ece_bins, temperature_prior_sigma, gallery_size, "
        "got 5"]
    assert problems(tmp_path, "train@vgg16", {"train.vgg16": MISSING}) == [
        "train.vgg16 is missing; it must be a mapping with the keys: weights, head_epochs, head_lr, fine_tune_layers, "
        "fine_tune_epochs, fine_tune_lr, fine_tune_schedule, dropout, patience, mirror_train, augmented_views, "
        "label_smoothing, mirror_average, composites"]


def test_a_stage_reads_only_its_own_keys(tmp_path):
    """train@cnn does not read vgg16's section, nor select's; select does not read a model's settings."""
    changes = {"train.vgg16.dropout": 7, "select.metric": "f1"}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(edited(changes)))
    assert read_params(path, **STAGES["train@cnn"]).train.model.epochs == PARAMS["train"]["cnn"]["epochs"]
    assert problems(tmp_path, "select", changes) == ["select.metric must be one of: accuracy, macro_precision, "
                                                     "macro_recall, macro_f1, got 'f1'"]


def test_every_problem_is_reported_at_once(tmp_path):
    changes = {"train.batch_size": 0, "train.mobilenetv2.fine_tune_lr": "x", "base.seed": "42"}
    assert problems(tmp_path, "train@mobilenetv2", changes) == [
        "base.seed must be an integer >= 0, got '42'",
        "train.batch_size must be an integer >= 1, got 0",
        "train.mobilenetv2.fine_tune_lr must be a number > 0, got 'x'",
    ]


def test_an_empty_or_broken_params_file_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    with pytest.raises(ParamsError) as refused:
        read_params(path, **STAGES["evaluate"])
    assert refused.value.problems == ["params.yaml must be a mapping with the keys: evaluate, data, got None"]
    path.write_text("evaluate: [batch_size: 1\n")
    with pytest.raises(ParamsError) as refused:
        read_params(path, **STAGES["evaluate"])
    assert str(refused.value).startswith(f"{path} is not valid YAML (while parsing a flow sequence")
    with pytest.raises(ParamsError) as refused:
        read_params(tmp_path / "absent.yaml", **STAGES["evaluate"])
    assert str(refused.value) == f"cannot read {tmp_path / 'absent.yaml'} (No such file or directory)"


def test_stage_params_prints_each_problem_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(edited({"evaluate.batch_size": 0, "evaluate.ece_bins": "15"})))
    with pytest.raises(SystemExit) as exited:
        stage_params(evaluate=EvaluateSettings)
    assert str(exited.value) == ("params.yaml: evaluate.batch_size must be an integer >= 1, got 0\n"
                                 "params.yaml: evaluate.ece_bins must be an integer >= 1, got '15'")


# Each stage script, run as DVC runs it, on a params.yaml with one bad value: one line on stderr, exit 1, no output.
STAGE_RUNS = [
    (["download.py"], "data.source", 123, f"data.source must be {SOURCE_RULE}, got 123"),
    (["unknowns.py"], "data.max_compression_ratio", 0, "data.max_compression_ratio must be a number > 0, got 0"),
    (["prepare.py"], "prepare.hash_size", "8", "prepare.hash_size must be an integer >= 2, got '8'"),
    (["augment.py"], "augment.max_zoom", 1.5, "augment.max_zoom must be a number within [0, 1) "
                                              "(fraction zoomed in, at most), got 1.5"),
    (["train.py", "mobilenetv2"], "train.mobilenetv2.fine_tune_lr", "x",
     "train.mobilenetv2.fine_tune_lr must be a number > 0, got 'x'"),
    (["train.py", "cnn"], "train.cnn.lr", float("inf"), "train.cnn.lr must be a finite number > 0, got inf"),
    (["evaluate.py", "cnn"], "evaluate.ece_bins", 0, "evaluate.ece_bins must be an integer >= 1, got 0"),
    (["select_model.py"], "train.models", ["cnn", "cnn"],
     "train.models must be a non-empty list of distinct model names, got ['cnn', 'cnn']"),
    (["select_model.py"], "train.models", ["cnn", "resnet"],
     "train.models: unknown model 'resnet', expected one of: cnn, vgg16, resnet50, mobilenetv2, inceptionv3, "
     "efficientnetb0"),
]


@pytest.mark.parametrize(("script", "key", "value", "message"), STAGE_RUNS, ids=[" ".join(r[0]) for r in STAGE_RUNS])
def test_a_stage_with_a_bad_value_says_so_in_one_line_and_exits_1_before_any_work(tmp_path, script, key, value,
                                                                                    message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited({key: value})))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / script[0]), *script[1:]],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"params.yaml: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written: no work started
