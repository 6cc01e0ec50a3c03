"""Choosing the model to deploy (on validation scores), its low-confidence threshold, its unknown-photo
detector, and the comparison table of all models."""

import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from sklearn.metrics import roc_auc_score

from fish_classifier.data.unknown_set import FISH_ELSEWHERE, GROUPS, NOT_FISH
from fish_classifier.evaluation.field import field_markdown, share
from fish_classifier.evaluation.metrics import HEADLINE_METRICS, plot_flag_tradeoff, plot_unknown_scores
from fish_classifier.layout import VAL_CONFIDENCE_FILE, metrics_dir
from fish_classifier.model.zoo import MODEL_NAMES
from fish_classifier.params import Rule, Section, choice, integer, number
from fish_classifier.serving.unknown import METHODS, UnknownDetector, UnknownSettings, threshold_for_flag_rate

TEST_FISH = "test fish"

THRESHOLD_RULES = ("val_flag_rate", "fixed")

Share = number(ge=0, le=1)


class TrainedModels(Section):
    """The part of params.yaml's `train` that select reads: `models`, the models trained and evaluated."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # each model's own settings are train's business

    models: Annotated[list[Literal[MODEL_NAMES]], Field(min_length=1),
                      Rule(f"a non-empty list of distinct model names from: {', '.join(MODEL_NAMES)}",
                           holds=lambda names: len(set(names)) == len(names))]


class SelectSettings(Section):
    """params.yaml's `select`: how the deploy model, its low-confidence threshold and its unknown-photo
    detector are chosen (see `unknown` for the detector's part)."""

    metric: choice(*HEADLINE_METRICS)
    threshold_rule: choice(*THRESHOLD_RULES)
    val_flag_rate: Share
    fixed_threshold: Share
    top_k: integer(ge=1)
    serving_parity_images: integer(ge=1)
    example_size: integer(ge=1)
    unknown_method: choice(*METHODS)
    unknown_power: number(gt=0, le=1)
    unknown_k: integer(ge=1)
    unknown_val_flag_rate: Share
    unknown_histogram_bins: integer(ge=1)

    @property
    def unknown(self) -> UnknownSettings:
        """The detector's settings, as `unknown.UnknownSettings` (that module serves, so it stays free of pydantic)."""
        return UnknownSettings(self.unknown_method, self.unknown_power, self.unknown_k, self.unknown_val_flag_rate)


def rank_models(metrics: dict[str, dict], metric: str) -> list[str]:
    """Model names best first: by validation `metric`, then validation accuracy, then the faster model.

    Only the `val` scores are read: the test split never chooses the model it then scores.
    """
    if metric not in HEADLINE_METRICS:
        raise ValueError(f"unknown select.metric {metric!r}, expected one of: {', '.join(HEADLINE_METRICS)}")
    if not metrics:
        raise ValueError("no models to rank")
    for name, scores in metrics.items():
        missing = [f"val.{key}" for key in (metric, "accuracy") if key not in scores.get("val", {})]
        missing += ["images_per_second"] * ("images_per_second" not in scores)
        if missing:
            raise ValueError(f"metrics of model {name!r} lack {', '.join(missing)}; run its evaluate stage again")
    return sorted(
        metrics,
        key=lambda name: (-metrics[name]["val"][metric], -metrics[name]["val"]["accuracy"],
                          -metrics[name]["images_per_second"]),
    )


def choose_threshold(val_confidences, *, rule: str, val_flag_rate: float, fixed_threshold: float) -> float:
    """The low-confidence threshold (an image is flagged when its confidence is below it).

    `val_flag_rate`: the highest threshold that flags at most that share of the validation images.
    `fixed`: `fixed_threshold` as it is.
    """
    if rule == "fixed":
        if not 0.0 <= fixed_threshold <= 1.0:
            raise ValueError(f"select.fixed_threshold must be within [0, 1], got {fixed_threshold}")
        return float(fixed_threshold)
    if rule != "val_flag_rate":
        raise ValueError(f"unknown select.threshold_rule {rule!r}, expected one of: {', '.join(THRESHOLD_RULES)}")
    if not 0.0 <= val_flag_rate <= 1.0:
        raise ValueError(f"select.val_flag_rate must be within [0, 1], got {val_flag_rate}")
    confidences = np.sort(np.asarray(val_confidences, dtype=np.float64))
    if confidences.size == 0:
        raise ValueError("no validation confidences to set the threshold from")
    allowed = math.floor(val_flag_rate * confidences.size + 1e-9)
    if allowed >= confidences.size:
        return 1.0
    # Flagging is `confidence < threshold`, so the (allowed+1)-th lowest confidence flags at
    # most `allowed` images (fewer on ties) and anything higher would flag one more.
    return float(confidences[allowed])


def model_threshold(name: str, select: SelectSettings) -> float:
    """Model `name`'s low-confidence threshold by `select`'s rule, from its calibrated validation confidences."""
    confidence = pd.read_csv(metrics_dir(name) / VAL_CONFIDENCE_FILE)["confidence"]
    return choose_threshold(confidence, rule=select.threshold_rule, val_flag_rate=select.val_flag_rate,
                            fixed_threshold=select.fixed_threshold)


def summary(metrics: dict[str, dict], metric: str, threshold: float, unknown: dict | None,
            field: dict | None = None) -> dict:
    """What `dvc metrics show` reports for the selection: the winner, every model's headline numbers
    (validation, test, clean test), when an unknown-photo set was given the detector's figures, and when a
    field set was given each model's and the bundle's field figures (`field_figures`)."""
    ranking = rank_models(metrics, metric)
    return {
        "selected": ranking[0],
        "metric": metric,
        "threshold": threshold,
        "ranking": ranking,
        "models": {name: _headline(metrics[name]) for name in ranking},
        **({"unknown": unknown} if unknown else {}),
        **({"field": field} if field else {}),
    }


def summary_markdown(metrics: dict[str, dict], metric: str, unknown: dict | None, field: dict | None = None) -> str:
    """A table of all models, best first, with the selected one in bold, then the field photos' figures
    (`field_figures` per model and for the bundle) and the unknown-photo figures."""
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
    return "\n".join([*lines, ""])


def fit_unknown_detector(settings: UnknownSettings, train_embeddings, train_labels, val_embeddings,
                         head=None) -> UnknownDetector:
    """The detector fitted on the train photos' embeddings, its threshold set on validation fish alone.

    `head`: the head's (kernel, bias), which the energy score needs."""
    kernel, bias = head if head is not None else (None, None)
    detector = UnknownDetector.fit(settings.method, train_embeddings, train_labels, k=settings.k,
                                   power=settings.power, head_kernel=kernel, head_bias=bias)
    return detector.with_threshold(threshold_for_flag_rate(detector.score(val_embeddings), settings.val_flag_rate))


def unknown_figures(detector: UnknownDetector, val_flag_rate: float, scores: dict[str, np.ndarray],
                    fish_elsewhere_labels=None, catch_all_labels=()) -> dict:
    """How the detector does on each group of photos: `scores` maps a group (test fish, not-fish,
    fish-elsewhere, ...) to its unknown scores; `fish_elsewhere_labels` are the labels those fish got."""
    figures = {
        "method": detector.method,
        "threshold": detector.threshold,
        "val_flag_rate": val_flag_rate,
        "images": {group: int(len(values)) for group, values in scores.items()},
        "flagged": {group: float(detector.is_unknown(values).mean()) for group, values in scores.items()},
        "auroc_test_fish_vs_not_fish": auroc(scores[TEST_FISH], scores[NOT_FISH]) if NOT_FISH in scores else None,
        "catch_all_labels": list(catch_all_labels),
        "fish_elsewhere_catch_all": None,
    }
    if fish_elsewhere_labels is not None and len(fish_elsewhere_labels):
        figures["fish_elsewhere_catch_all"] = float(np.isin(fish_elsewhere_labels, list(catch_all_labels)).mean())
    return figures


def auroc(fish_scores, unknown_scores) -> float:
    """Area under the ROC curve of the unknown score telling `unknown_scores` (positive) from `fish_scores`."""
    truth = np.r_[np.zeros(len(fish_scores)), np.ones(len(unknown_scores))]
    return float(roc_auc_score(truth, np.r_[fish_scores, unknown_scores]))


def score_histogram(scores: dict[str, np.ndarray], bins: int) -> pd.DataFrame:
    """Share of each group's photos per score bin (one column per group), on bins shared by all groups."""
    edges = np.histogram_bin_edges(np.concatenate(list(scores.values())), bins=bins)
    table = {"score": (edges[:-1] + edges[1:]) / 2}
    for group, values in scores.items():
        table[group] = np.histogram(values, bins=edges)[0] / max(len(values), 1)
    return pd.DataFrame(table)


def flag_tradeoff(scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """The share of each group flagged as the threshold moves over every score seen."""
    thresholds = np.unique(np.concatenate(list(scores.values())))
    table = {"threshold": thresholds}
    for group, values in scores.items():
        ordered = np.sort(values)
        table[group] = 1.0 - np.searchsorted(ordered, thresholds, side="right") / len(ordered)
    return pd.DataFrame(table)


def write_unknown_plots(scores: dict[str, np.ndarray], detector: UnknownDetector, out_dir, *, bins: int,
                        model: str) -> None:
    """scores.csv/.png (each group's score histogram) and tradeoff.csv/.png (not-fish flagged against fish from
    elsewhere flagged as the threshold moves, or against the test fish when the set has no fish from elsewhere)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [TEST_FISH, *GROUPS]  # all of them, empty where the set has none: dvc.yaml's plots name each
    histogram = score_histogram(scores, bins=bins)
    histogram.reindex(columns=["score", *columns]).to_csv(out_dir / "scores.csv", index=False)
    plot_unknown_scores(histogram, detector.threshold, out_dir / "scores.png", f"{model}: unknown-photo scores")
    tradeoff = flag_tradeoff(scores)
    tradeoff.reindex(columns=["threshold", *columns]).to_csv(out_dir / "tradeoff.csv", index=False)
    x = FISH_ELSEWHERE if FISH_ELSEWHERE in scores else TEST_FISH
    y = NOT_FISH if NOT_FISH in scores else TEST_FISH
    marked = (detector.is_unknown(scores[x]).mean(), detector.is_unknown(scores[y]).mean())
    plot_flag_tradeoff(tradeoff, x, y, marked, out_dir / "tradeoff.png", f"{model}: flagged as the threshold moves")


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
