"""Thresholds set on validation at a rate: the one rule behind the low-confidence threshold (`select.val_flag_rate`)
and the unknown-photo detector's (`select.unknown_val_flag_rate`)."""

import math
from typing import Literal

import numpy as np

THRESHOLD_RULES = ("val_flag_rate", "fixed")


def threshold_at_rate(values, flag_rate: float, *, flagged: Literal["below", "above"], key: str, what: str,
                      everything: float | None = None) -> float:
    """The threshold that flags as many of `values` as it can but at most `flag_rate` of them: the highest one
    when a value is flagged `below` it (a confidence), the lowest when `above` it (an unknown-photo score).

    `key` names the rate's setting and `what` the values in an error. When every value may be flagged it is
    `everything`, or else the nearest number past the last value (a finite threshold that flags them all).
    """
    if not 0.0 <= flag_rate <= 1.0:
        raise ValueError(f"{key} must be within [0, 1], got {flag_rate}")
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"no {what} to set the threshold from")
    if not np.isfinite(values).all():
        raise ValueError(f"{values.size - np.isfinite(values).sum()} of the {what} are not finite "
                         "(NaN or infinite): no threshold can be set from them")
    # Worked as `above`: a value flagged below a threshold is its negative flagged above the negated threshold.
    sign = 1.0 if flagged == "above" else -1.0
    ordered = np.sort(sign * values)[::-1]
    allowed = math.floor(flag_rate * values.size + 1e-9)
    if allowed >= values.size:
        return float(everything) if everything is not None else float(sign * np.nextafter(ordered[-1], -np.inf))
    # The (allowed+1)-th most flaggable value flags exactly the `allowed` beyond it (fewer on ties), and any
    # threshold past it would flag one more.
    return float(sign * ordered[allowed])


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
    return threshold_at_rate(val_confidences, val_flag_rate, flagged="below", key="select.val_flag_rate",
                             what="validation confidences", everything=1.0)
