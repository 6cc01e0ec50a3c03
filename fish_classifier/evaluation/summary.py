"""The comparison of all models that `select` writes: metrics/summary.json (what `dvc metrics show` reports)
and metrics/summary.md (the table, the field photos' figures and the unknown-photo detector's)."""

import json
from pathlib import Path

from fish_classifier.evaluation.field import field_markdown, share
from fish_classifier.evaluation.metrics import HEADLINE_METRICS
from fish_classifier.evaluation.selection import rank_models
from fish_classifier.evaluation.unknown_report import SMALL_TEST_FISH


def summary(metrics: dict[str, dict], metric: str, threshold: float, unknown: dict | None,
            field: dict | None = None, *, detector: dict | None = None) -> dict:
    """What `dvc metrics show` reports for the selection: the winner, every model's headline numbers
    (validation, test, clean test), how the unknown-photo detector was fitted (`detector`:
    `BundleDetector.fitted_on`), when an unknown-photo set was given the detector's figures, and when a
    field set was given each model's and the bundle's field figures (`field_figures`)."""
    ranking = rank_models(metrics, metric)
    return {
        "selected": ranking[0],
        "metric": metric,
        "threshold": threshold,
        "ranking": ranking,
        "models": {name: _headline(metrics[name]) for name in ranking},
        **({"detector": detector} if detector else {}),
        **({"unknown": unknown} if unknown else {}),
        **({"field": field} if field else {}),
    }


def write_summary(json_path: Path, markdown_path: Path, metrics: dict[str, dict], metric: str, threshold: float,
                  unknown: dict | None, field: dict | None, *, detector: dict | None) -> None:
    """Write `summary` to `json_path` and `summary_markdown` to `markdown_path`."""
    Path(json_path).write_text(json.dumps(summary(metrics, metric, threshold, unknown, field, detector=detector),
                                          indent=2) + "\n", encoding="utf-8")
    Path(markdown_path).write_text(summary_markdown(metrics, metric, unknown, field, detector=detector),
                                   encoding="utf-8")


def summary_markdown(metrics: dict[str, dict], metric: str, unknown: dict | None, field: dict | None = None, *,
                     detector: dict | None = None) -> str:
    """A table of all models, best first, with the selected one in bold, then the field photos' figures
    (`field_figures` per model and for the bundle), how the unknown-photo detector was fitted (`detector`) and its
    figures."""
    ranking = rank_models(metrics, metric)
    best = metrics[ranking[0]]
    lines = [
        f"| Model | Val {_NAMES[metric]} | Test accuracy | Test macro F1 | Clean test accuracy | Clean test macro F1 "
        "| Field species right | ECE | img/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ranking:
        row = _headline(metrics[name])
        label = f"**{name}**" if name == ranking[0] else name
        ece = "n/a" if row["ece"] is None else f"{row['ece']:.4f}"
        lines.append(
            f"| {label} | {row['val'][metric]:.4f} | {row['test']['accuracy']:.4f} | {row['test']['macro_f1']:.4f} "
            f"| {row['test_clean']['accuracy']:.4f} | {row['test_clean']['macro_f1']:.4f} "
            f"| {share(metrics[name].get('field', {}).get('species_accuracy'))} | {ece} "
            f"| {row['images_per_second']:.1f} |"
        )
    clean = best["test_clean"]
    lines += [
        "",
        f"Selected **{ranking[0]}** by its validation {_NAMES[metric]}; ties go to validation accuracy, then to the "
        "faster model. The test split is only reported, never used to choose. Test: all "
        f"{best['test_images']} test photos. Clean test: the {clean['images']} of them with no exact or near "
        f"duplicate in train ({clean['left_out']} left out; the dataset was augmented before it was split). "
        "ECE (expected calibration error) is on the test split, after temperature scaling.",
        "",
        *field_markdown(field or {}, ranking[0]),
        "## Unknown photos",
        "",
        *([detector_line(detector), ""] if detector else []),
    ]
    if not unknown:
        lines += ["No unknown-photo set was given (`data.unknown_source` is empty), so the figures of the "
                  "unknown-photo detector are skipped. Point it at a zip or folder of photos that are no fish "
                  "(`not-fish/`) and, optionally, fish from elsewhere (`fish-elsewhere/`) to measure it.", ""]
        return "\n".join(lines)
    flagged = unknown["flagged"]
    lines += [
        f"Detector: {unknown['method']} on the deploy model's embeddings, threshold {unknown['threshold']:.4g} "
        f"(flags {unknown['val_flag_rate']:.1%} of validation fish at most; chosen on validation fish only).",
        "",
        "| Photos | Count | Flagged as unknown |",
        "|---|---:|---:|",
        *[f"| {group} | {unknown['images'][group]} | {flagged[group]:.1%} |" for group in flagged],
        "",
    ]
    if unknown["auroc_test_fish_vs_not_fish"] is not None:
        lines.append(f"AUROC, test fish against not-fish: **{unknown['auroc_test_fish_vs_not_fish']:.4f}**.")
    if unknown.get("fish_elsewhere_catch_all") is not None:
        lines.append(f"Fish from elsewhere given a catch-all label ({', '.join(unknown['catch_all_labels'])}): "
                     f"{unknown['fish_elsewhere_catch_all']:.1%}.")
    if SMALL_TEST_FISH in flagged:
        lines.append(f"{SMALL_TEST_FISH.capitalize()}: the test fish brought down to `select.unknown_small_px` px on "
                     "their longest side, as small phone photos and the outlier pool's photos are; flagging them "
                     "would mean the detector learned that small means no fish.")
    return "\n".join([*lines, ""])


def detector_line(detector: dict) -> str:
    """What the unknown-photo detector was fitted on, in a sentence (`detector`: `BundleDetector.fitted_on`)."""
    return " ".join([_fitted_line(detector), _imagenet_line(detector.get("imagenet_weight") or 0.0),
                     *([_doubt_line(detector["catch_all_doubt"])] if detector.get("catch_all_doubt") else [])])


def _doubt_line(doubt: dict) -> str:
    flagged = ("" if doubt["test_catch_all_flagged"] is None else
               f" On the test photos it flags {doubt['test_catch_all_flagged']:.1%} of the "
               f"{doubt['test_catch_all_answers']} catch-all answers ({doubt['test_flagged']:.1%} of all test photos); "
               "their answers stay as they are.")
    return (f"Catch-all answers ({', '.join(doubt['labels'])}) are flagged low-confidence when the ImageNet head puts "
            f"less than {doubt['threshold']:.3g} on fish that are none of the species (`select.catch_all_doubt_rate`: "
            f"{doubt['rate']:.0%} of the validation catch-all answers): such a photo may be a named species "
            "photographed outside the studio." + flagged)


def _imagenet_line(weight: float) -> str:
    if not weight:
        return ("No ImageNet branch: `select.unknown_imagenet_weight` is 0, or the deploy model did not start from "
                "ImageNet's weights, so it has no ImageNet layers to share.")
    return (f"The score adds, at weight {weight:g}, the ImageNet head's (minus the log of its probability on "
            "ImageNet's fish and crustaceans), from a branch of the LiteRT model that shares the deploy model's "
            "frozen ImageNet layers; both scores are standardised on the validation fish.")


def _fitted_line(detector: dict) -> str:
    fish = "the train fish" + (f" (as they are and brought down to {detector['small_px']} px, so that a small photo is "
                               "not taken for no fish)" if detector.get("small_px") else "")
    if detector["outliers"] == "relative":
        held = (f" Another {detector['held_back_photos']} photos of the pool were kept out of the fit "
                f"(`select.unknown_held_back`): it flags {detector['held_back_flagged']:.1%} of them. That share and "
                "the validation fish are what methods and settings are chosen by, never the figures below."
                if detector.get("held_back_photos") else "")
        return (f"Fitted on {fish} and on {detector['outlier_photos']} photos that are no fish (data/outliers: "
                "`data.outlier_source` and the users' not-fish marks), which never count in the figures: the score is "
                "the distance to the nearest fish class minus the distance to those photos (relative Mahalanobis)."
                + held)
    if detector["asked"] == "auto" and detector["method"] == "mahalanobis":
        return (f"Fitted on {fish} alone (Mahalanobis): the outlier pool (data/outliers) holds fewer than two "
                "photos that are no fish, so `select.unknown_outliers: auto` kept the detector without them. Point "
                "`data.outlier_source` at such photos (its default downloads Tiny ImageNet) for the relative "
                "detector.")
    return (f"Fitted on {fish} alone ({detector['method']}, `select.unknown_outliers: "
            f"{detector['asked']}`): no photos that are no fish fit it.")


def _headline(scores: dict) -> dict:
    return {
        "val": {key: scores["val"][key] for key in HEADLINE_METRICS},
        "test": {key: scores[key] for key in HEADLINE_METRICS},
        "test_clean": {key: scores["test_clean"][key] for key in (*HEADLINE_METRICS, "images")},
        "ece": scores.get("calibration", {}).get("ece_after"),
        "images_per_second": scores["images_per_second"],
        "model_size_mb": scores.get("model_size_mb"),
    }


_NAMES = {"accuracy": "accuracy", "macro_precision": "macro precision", "macro_recall": "macro recall",
          "macro_f1": "macro F1"}
