"""Choosing the model to deploy, its low-confidence threshold, and the comparison table of all models."""

import math

import numpy as np

from fish_classifier.metrics import HEADLINE_METRICS

THRESHOLD_RULES = ("val_flag_rate", "fixed")


def rank_models(metrics: dict[str, dict], metric: str) -> list[str]:
    """Model names best first: by `metric`, then accuracy, then the faster model (images per second)."""
    if metric not in HEADLINE_METRICS:
        raise ValueError(f"unknown select.metric {metric!r}, expected one of: {', '.join(HEADLINE_METRICS)}")
    if not metrics:
        raise ValueError("no models to rank")
    for name, scores in metrics.items():
        missing = [key for key in (metric, "accuracy", "images_per_second") if key not in scores]
        if missing:
            raise ValueError(f"metrics of model {name!r} lack {', '.join(missing)}")
    return sorted(
        metrics,
        key=lambda name: (-metrics[name][metric], -metrics[name]["accuracy"], -metrics[name]["images_per_second"]),
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


def summary(metrics: dict[str, dict], metric: str, threshold: float) -> dict:
    """What `dvc metrics show` reports for the selection: the winner and every model's headline numbers."""
    ranking = rank_models(metrics, metric)
    return {
        "selected": ranking[0],
        "metric": metric,
        "threshold": threshold,
        "ranking": ranking,
        "models": {name: _headline(metrics[name]) for name in ranking},
    }


def summary_markdown(metrics: dict[str, dict], metric: str) -> str:
    """A table of all models, best first, with the selected one in bold."""
    ranking = rank_models(metrics, metric)
    lines = [
        "| Model | Accuracy | Macro Precision | Macro Recall | Macro F1 | ECE | img/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ranking:
        row = _headline(metrics[name])
        label = f"**{name}**" if name == ranking[0] else name
        ece = "n/a" if row["ece"] is None else f"{row['ece']:.4f}"
        lines.append(
            f"| {label} | {row['accuracy']:.4f} | {row['macro_precision']:.4f} | {row['macro_recall']:.4f} "
            f"| {row['macro_f1']:.4f} | {ece} | {row['images_per_second']:.1f} |"
        )
    lines += [
        "",
        f"Selected **{ranking[0]}** by {metric}; ties go to accuracy, then to the faster model. "
        "All scores are on the test split; ECE (expected calibration error) is after temperature scaling.",
        "",
    ]
    return "\n".join(lines)


def _headline(scores: dict) -> dict:
    return {
        **{key: scores[key] for key in HEADLINE_METRICS},
        "ece": scores.get("calibration", {}).get("ece_after"),
        "images_per_second": scores["images_per_second"],
        "model_size_mb": scores.get("model_size_mb"),
    }
