"""Choosing the model to deploy, on validation scores, and its low-confidence threshold: the select stage's
settings (`select`) and the ranking."""

import json
import pandas as pd
from pydantic import model_validator

from fish_classifier.evaluation.metrics import HEADLINE_METRICS
from fish_classifier.evaluation.thresholds import THRESHOLD_RULES, choose_threshold
from fish_classifier.evaluation.unknown_fit import FIT_METHODS, OUTLIER_USES, UnknownSettings
from fish_classifier.layout import METRICS_FILE, VAL_CONFIDENCE_FILE, metrics_dir
from fish_classifier.params import Section, choice, integer, number, refuse

Share = number(ge=0, le=1)


class SelectSettings(Section):
    """params.yaml's `select`: how the deploy model, its low-confidence threshold and its unknown-photo
    detector are chosen (see `unknown` for the detector's part)."""

    metric: choice(*HEADLINE_METRICS)
    threshold_rule: choice(*THRESHOLD_RULES)
    val_flag_rate: Share
    fixed_threshold: Share
    top_k: integer(ge=1)
    batch_size: integer(ge=1)  # photos per model call while fitting and measuring the detector
    serving_parity_images: integer(ge=1)
    example_size: integer(ge=1)
    unknown_method: choice(*FIT_METHODS)
    unknown_power: number(gt=0, le=1)
    unknown_k: integer(ge=1)
    unknown_val_flag_rate: Share
    unknown_outliers: choice(*OUTLIER_USES)
    unknown_histogram_bins: integer(ge=1)
    unknown_small_px: integer(ge=16)  # below images.no_content's 16 px every photo is unknown by rule
    unknown_held_back: Share  # of the outlier pool, kept out of the fit to choose methods and settings by
    unknown_imagenet_weight: number(ge=0)  # the ImageNet head's part in the score; 0: no ImageNet branch
    catch_all_doubt_rate: Share  # of the validation catch-all answers, flagged when ImageNet's head does not back them

    @model_validator(mode="after")
    def _relative_needs_mahalanobis(self):
        if self.unknown_outliers == "relative" and self.unknown_method != "mahalanobis":
            raise refuse("unknown_outliers", self.unknown_outliers,
                         f"ignore with unknown_method {self.unknown_method} (relative scores against mahalanobis)")
        return self

    @property
    def unknown(self) -> UnknownSettings:
        """The detector's settings, as `unknown_fit.UnknownSettings` (`outliers` may still be auto: the select stage
        settles it by the outlier pool, `bundle_detector.outlier_pool_for`)."""
        return UnknownSettings(self.unknown_method, self.unknown_power, self.unknown_k, self.unknown_val_flag_rate,
                               self.unknown_outliers, self.unknown_imagenet_weight)


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


def model_threshold(name: str, select: SelectSettings) -> float:
    """Model `name`'s low-confidence threshold by `select`'s rule, from its calibrated validation confidences."""
    confidence = pd.read_csv(metrics_dir(name) / VAL_CONFIDENCE_FILE)["confidence"]
    return choose_threshold(confidence, rule=select.threshold_rule, val_flag_rate=select.val_flag_rate,
                            fixed_threshold=select.fixed_threshold)


def read_model_metrics(names) -> dict[str, dict]:
    """Each model's metrics.json (its evaluate stage's), by name."""
    return {name: json.loads((metrics_dir(name) / METRICS_FILE).read_text(encoding="utf-8")) for name in names}


def choose_model(names, select: SelectSettings) -> tuple[dict[str, dict], str, float]:
    """Each model's metrics.json, the best of them by validation `select.metric`, and its low-confidence threshold."""
    metrics = read_model_metrics(names)
    best = rank_models(metrics, select.metric)[0]
    return metrics, best, model_threshold(best, select)
