"""How the models name the field photos (`data.field_source`: the species photographed outside the studio),
as `select` reports it: per model, and for the deploy bundle with its unknown-photo detector."""

import numpy as np
import pandas as pd

BUNDLE = "deploy bundle"  # the row of the deploy bundle, beside the models' rows


def field_figures(predictions: pd.DataFrame, threshold: float, other_fish_labels: list[str],
                  unknown=None, doubted=None) -> dict:
    """What a user photographing fish anywhere would get, from a model's field_predictions.csv (path, label,
    predicted, confidence): a photo is flagged when its confidence is below `threshold` or, given `unknown`
    (one boolean per photo, the unknown-photo detector's verdict), when it is an unknown photo, or, given
    `doubted` (the bundle's catch-all doubt, `serving.catch_all`), when its catch-all answer is doubted.

    species_right: photos of a named species (a class outside `other_fish_labels`) whose top class is right,
    flagged or not. confidently_wrong: photos whose top class is wrong and that are not flagged. other_fish_ok:
    photos of `other_fish_labels` that get one of those labels or are flagged. unknown: the share `unknown` flags
    alone (None without it).
    """
    labels, predicted = predictions["label"].to_numpy(), predictions["predicted"].to_numpy()
    flagged = predictions["confidence"].to_numpy() < threshold
    if unknown is not None:
        flagged |= np.asarray(unknown, dtype=bool)
    if doubted is not None:
        flagged |= np.asarray(doubted, dtype=bool)
    right = labels == predicted
    species, other = ~np.isin(labels, other_fish_labels), np.isin(labels, other_fish_labels)

    def mean(values, where):
        return float(values[where].mean()) if where.any() else None

    return {
        "images": int(len(labels)),
        "species_right": mean(right, species),
        "flagged": mean(flagged, np.ones_like(right)),
        "unknown": None if unknown is None else mean(np.asarray(unknown, dtype=bool), np.ones_like(right)),
        "doubted": None if doubted is None else mean(np.asarray(doubted, dtype=bool), np.ones_like(right)),
        "confidently_wrong": mean(~right & ~flagged, np.ones_like(right)),
        "other_fish_ok": mean(np.isin(predicted, other_fish_labels) | flagged, other),
        "per_class": {label: {"images": int((labels == label).sum()), "right": mean(right, labels == label),
                              "flagged": mean(flagged, labels == label)}
                      for label in sorted(set(labels))},
    }


def field_report(predictions: dict[str, pd.DataFrame], threshold_of, selected: str, other_fish_labels: list[str],
                 flag_photos, metrics: dict[str, dict]) -> dict:
    """`field_figures` of every model with field photos (`predictions`: its field_predictions.csv), each flagged by
    its own low-confidence threshold (`threshold_of(name)`), and of the deploy bundle (`selected` with its
    unknown-photo detector and its catch-all doubt: `flag_photos(paths)` gives both verdicts, `(unknown, doubted)`).
    Each also gets its model's closest species right, as `evaluate` scored it (`metrics[name]`: the model's
    metrics.json, whose field scores come from `metrics.field_scores`). Empty without field photos."""
    def closest(name):
        return {"closest_species_right": metrics[name].get("field", {}).get("closest_species_accuracy")}

    field = {name: {**field_figures(rows, threshold_of(name), other_fish_labels), **closest(name)}
             for name, rows in predictions.items() if len(rows)}
    if field:
        rows = predictions[selected]
        field[BUNDLE] = {**field_figures(rows, threshold_of(selected), other_fish_labels, *flag_photos(rows["path"])),
                         **closest(selected)}
    return field


def field_markdown(figures: dict[str, dict], selected: str) -> list[str]:
    """The field section of summary.md: one row per model (its low-confidence threshold alone flags), and
    the deploy bundle's row (the unknown-photo detector flags too)."""
    if not figures:
        return ["## Field photos", "", "No field set was given (`data.field_source` is empty), so how the models "
                "name fish photographed outside the studio is not measured.", ""]
    lines = ["## Field photos", "",
             "Species photographed outside the studio (`data.field_source`). They train nothing and choose nothing.",
             "", "| Model | Photos | Species right | Closest species right | Flagged | Confidently wrong "
             "| Other fish: catch-all or flagged |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in figures.items():
        label = f"**{name}**" if name == selected else name
        lines.append(f"| {label} | {row['images']} | {share(row['species_right'])} "
                     f"| {share(row.get('closest_species_right'))} | {share(row['flagged'])} "
                     f"| {share(row['confidently_wrong'])} | {share(row['other_fish_ok'])} |")
    bundle = figures.get(BUNDLE)
    if bundle:
        lines += ["", "Per class, the deploy bundle: " + "; ".join(
            f"{label} {share(c['right'])} right, {share(c['flagged'])} flagged of {c['images']}"
            for label, c in bundle["per_class"].items()) + f". Its unknown-photo detector alone flags "
            f"{share(bundle['unknown'])} of the field photos: fish, so each one it flags is a false alarm."]
        if bundle.get("doubted") is not None:
            lines[-1] += (f" Its catch-all doubt flags {share(bundle['doubted'])}: catch-all answers that ImageNet's "
                          "head does not back.")
    lines += ["", "Species right: the top class is right, flagged or not. Closest species right: the most likely "
              "class that is not the catch-all is right (the species the app names beside a doubted catch-all "
              "answer); the gap between the two is what the catch-all class takes. Flagged: confidence below the "
              "model's low-confidence threshold (set on validation) or, for the deploy bundle, an unknown photo or a "
              "doubted catch-all answer. Confidently wrong: wrong and not flagged, out of every field photo.", ""]
    return lines


def share(value) -> str:
    """A share as a percentage for the tables, or n/a where there was nothing to count."""
    return "n/a" if value is None else f"{value:.1%}"
