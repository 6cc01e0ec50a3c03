"""How far does the seed alone move a model's test scores? Train it several times on the same data and
params, changing only the seed, and score each run the way the `evaluate` stage does.

On 408 test photos one photo is 0.25% of accuracy, and an ECE rests on a handful of errors. This
shows how many photos the seed alone moves, so a single run's score, or a target such as 0.99, can
be read against that spread. Prints per seed: test accuracy, macro F1, errors on validation and on
test, the temperature fitted on validation, and the test ECE before and after it; with field photos
(`data/field`, from `data.field_source`), the share of its named species' photos named right, as
`evaluate` scores it (on 67 photos one is 1.5 points), and the share whose most likely class that is not the
catch-all is right (the closest species right of `summary.md`); then min, mean and max. Needs the dev data
prepared and the model's weights (README: "Offline, from the dev zip").
From the repo root:

    python bench/seed_spread.py --model mobilenetv2 --seeds 42 1 2 3 4
"""

import argparse
import sys
import time

import numpy as np

from fish_classifier.layout import AUGMENTED_MANIFEST, CLASSES, FIELD_MANIFEST, MANIFEST, composite_set

COLUMNS = ("accuracy", "macro_f1", "val_errors", "test_errors", "temperature", "ece_before", "ece_after",
           "field_species_right", "field_closest_right")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    if not MANIFEST.is_file():
        sys.exit(f"{MANIFEST} is missing: prepare the dev data first (README: 'Offline, from the dev zip')")

    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        row = train_and_score(args.model, seed)
        rows.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {row[k]:.4g}" for k in COLUMNS)
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)

    print(f"\n{args.model}, params.yaml as it is, {len(rows)} seeds, dev zip test split")
    print(f"{'seed':>6}" + "".join(f"{c:>13}" for c in COLUMNS))
    for seed, row in zip(args.seeds, rows):
        print(f"{seed:>6}" + "".join(f"{row[c]:>13.4f}" for c in COLUMNS))
    for name, reduce in (("min", np.min), ("mean", np.mean), ("max", np.max)):
        print(f"{name:>6}" + "".join(f"{reduce([r[c] for r in rows]):>13.4f}" for c in COLUMNS))


def train_and_score(name: str, seed: int) -> dict:
    """Train `name` with `seed` as `train@<name>` would, then score it as `evaluate@<name>` does."""
    import keras
    import pandas as pd

    from fish_classifier.data.augment import AugmentSettings
    from fish_classifier.data.manifest import CatchAllLabels, label_indices, read_manifest
    from fish_classifier.evaluation.metrics import EvaluateSettings, calibration_report, field_scores, headline
    from fish_classifier.evaluation.predictions import predict_split
    from fish_classifier.params import read_params
    from fish_classifier.serving.inference import KerasBackend, probabilities_for_files
    from fish_classifier.training.pixels import load_training_data
    from fish_classifier.training.settings import TrainSettings
    from fish_classifier.training.trainer import train_model

    keras.backend.clear_session()
    params = read_params(augment=AugmentSettings, train=TrainSettings.for_model(name), evaluate=EvaluateSettings,
                         data=CatchAllLabels)
    data = load_training_data(MANIFEST, AUGMENTED_MANIFEST, CLASSES, composite_set(name))  # as stages/train.py
    model = train_model(name, data, params.train, seed, augmentation=params.augment.augmentation)

    manifest = read_manifest(MANIFEST)
    backend = KerasBackend(model)
    batch_size, bins = params.evaluate.batch_size, params.evaluate.ece_bins
    val, test = (
        predict_split(backend, manifest, split, data.classes, batch_size=batch_size, desc=f"seed {seed} {split}")
        for split in ("val", "test")
    )
    y_val, y_test = val.y_true, test.y_true
    val_probs, test_probs = val.probabilities, test.probabilities

    report = headline(y_test, test_probs.argmax(axis=1), len(data.classes))
    calibration = calibration_report(val_probs, y_val, test_probs, y_test, bins,
                                     params.evaluate.temperature_prior_sigma)
    field = pd.read_csv(FIELD_MANIFEST, dtype=str, keep_default_na=False) if FIELD_MANIFEST.is_file() else []
    species_right = closest_right = float("nan")  # no field photos, or none of a named species
    if len(field):
        field_probs, _ = probabilities_for_files(backend, field["path"], batch_size=batch_size,
                                                 desc=f"seed {seed} field")
        scores = field_scores(field["label"], label_indices(field["label"], data.classes), field_probs,
                              data.classes, params.data.other_fish_labels)
        if scores["species_accuracy"] is not None:
            species_right, closest_right = scores["species_accuracy"], scores["closest_species_accuracy"]
    return {
        "field_species_right": species_right,
        "field_closest_right": closest_right,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "test_errors": int((test_probs.argmax(axis=1) != y_test).sum()),
        **{key: calibration[key] for key in ("val_errors", "temperature", "ece_before", "ece_after")},
    }


if __name__ == "__main__":
    main()
