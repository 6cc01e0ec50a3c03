"""How far the unknown-photo detector could go on these photos: the ceiling behind issue #17's
"98% of not-fish flagged at 1% of test fish".

On the bundle's own LiteRT embeddings (and, for comparison, a frozen ImageNet backbone's), it prints for
each detector: AUROC (test fish against not-fish), the share of each group flagged at a threshold set on
validation fish (`select.unknown_val_flag_rate`, as the bundle does), and the share of not-fish flagged at
the best threshold that flags at most 1% of the test fish. That last column chooses its threshold on the
test fish themselves: it is an upper bound for the detector's scores, never a figure to report as its own.

It also says where the not-fish that pass go (the label the bundle gives them) and which classes the
highest-scoring test fish belong to: the 1% budget on 408 test fish is 4 photos.

Rows:
    bundle            the deploy bundle's detector as fitted by `select`
    imagenet          Mahalanobis at power 1 on the selected backbone's mirror-averaged pooled features as
                      ImageNet left them, before any fine-tuning (needs its weights under KERAS_HOME)
    bundle + imagenet the two scores, each standardised on validation fish, summed
    train+val         the bundle's method fitted on train and validation embeddings, its threshold set on
                      5-fold out-of-fold validation scores (train embeddings are in-sample: the catch-all
                      classes' validation distances are over 3x their train distances)

Usage (from the repo root, after `dvc repro` with `data.unknown_source` set):
    python bench/unknown_ceiling.py [--bundle models/deploy] [--unknown PATH] [--json out.json]
"""

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.data.manifest import label_indices, read_manifest, scored_split
from fish_classifier.data.unknown_set import FISH_ELSEWHERE, NOT_FISH, collect_unknown_set
from fish_classifier.evaluation.selection import SelectSettings
from fish_classifier.evaluation.thresholds import threshold_at_rate
from fish_classifier.evaluation.unknown_fit import fit_detector, validation_threshold
from fish_classifier.evaluation.unknown_report import TEST_FISH, auroc
from fish_classifier.images import load_pixels
from fish_classifier.layout import MANIFEST, UNKNOWN_DIR
from fish_classifier.model.zoo import BACKBONES, build_backbone
from fish_classifier.params import stage_params
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR
from fish_classifier.serving.inference import EMBEDDING, PROBABILITIES, LiteRTBackend, outputs_for_files
from fish_classifier.serving.predictor import Predictor
from fish_classifier.serving.unknown import RELATIVE

DEFAULT_UNKNOWN = UNKNOWN_DIR / "photos"  # the unknowns stage's copy of data.unknown_source
MAX_TEST_FISH_RATE = 0.01
GROUPS = (TEST_FISH, NOT_FISH, FISH_ELSEWHERE, "val")  # what each detector scores; "val" sets its threshold


def imagenet_features(model_name: str, paths: dict, batch: int) -> dict:
    """Per group of photos, the selected model's backbone as ImageNet left it, before any fine-tuning: its
    pooled features, averaged over each photo and its mirror. Size, preprocessing and weights come from the zoo."""
    spec, backbone = BACKBONES[model_name], build_backbone(model_name, "imagenet")

    def pooled(inputs):
        return backbone.predict(inputs, verbose=0).mean(axis=(1, 2))

    features = {}
    for group, files in paths.items():
        rows = []
        for start in range(0, len(files), batch):
            pixels = np.stack([load_pixels(p, spec.input_size) for p in files[start : start + batch]]).astype("float32")
            inputs = spec.preprocess_input(pixels)  # per pixel, so it commutes with the mirror
            rows.append((pooled(inputs) + pooled(inputs[:, :, ::-1])) / 2)
        features[group] = np.concatenate(rows)
    return features


def figures(scores: dict, threshold: float) -> dict:
    """Flag shares at `threshold`, AUROC, and not-fish flagged at the best threshold allowed by the test fish."""
    ceiling = threshold_at_rate(scores[TEST_FISH], MAX_TEST_FISH_RATE, flagged="above", key="MAX_TEST_FISH_RATE",
                                what="test fish scores")
    return {
        "auroc": auroc(scores[TEST_FISH], scores[NOT_FISH]),
        "flagged": {group: float((values > threshold).mean()) for group, values in scores.items() if group != "val"},
        "not_fish_at_1pct_test_fish": float((scores[NOT_FISH] > ceiling).mean()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE_DIR))
    parser.add_argument("--manifest", default=str(MANIFEST))
    parser.add_argument("--unknown", default=str(DEFAULT_UNKNOWN), help="zip or folder: not-fish/, fish-elsewhere/")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    params = stage_params(select=SelectSettings, data=UnpackLimits)  # checked as the select stage reads them
    rate, batch = params.select.unknown_val_flag_rate, params.select.batch_size
    predictor = Predictor(args.bundle)
    if predictor.detector is None or predictor.detector.method not in ("mahalanobis", RELATIVE):
        raise SystemExit("this bench compares Mahalanobis detectors: the bundle's must be one (select.unknown_method)")
    if predictor.model_name not in BACKBONES:
        raise SystemExit(f"the bundle's model {predictor.model_name!r} has no ImageNet backbone to compare with")
    manifest = read_manifest(args.manifest)
    splits = {split: scored_split(manifest, split) for split in ("train", "val", "test")}
    with tempfile.TemporaryDirectory() as work:
        unknowns = collect_unknown_set(args.unknown, Path(work), params.data).manifest
        paths = {"train": list(splits["train"]["path"]), "val": list(splits["val"]["path"]),
                 TEST_FISH: list(splits["test"]["path"])}
        paths.update({group: list(rows["path"]) for group, rows in unknowns.groupby("group")})
        backend = LiteRTBackend(predictor.bundle.serving_model_path)
        outputs = {g: outputs_for_files(backend, p, batch_size=batch, desc=g) for g, p in paths.items()}
        imagenet = imagenet_features(predictor.model_name, paths, batch)
    bundle = {group: values[EMBEDDING] for group, values in outputs.items()}
    labels = {split: label_indices(splits[split]["label"], predictor.classes) for split in ("train", "val", "test")}
    power = predictor.detector.power

    rows = {"bundle": {g: predictor.detector.score_outputs(outputs[g]) for g in GROUPS},
            "imagenet": fitted(imagenet, labels["train"], 1.0)}
    rows["bundle + imagenet"] = {g: standardised(rows["bundle"])[g] + standardised(rows["imagenet"])[g] for g in GROUPS}
    rows["train+val"] = cross_fitted(bundle, labels, power)
    # The label the bundle gives each not-fish photo it lets through (calibration does not move the argmax).
    through = ~predictor.detector.is_unknown(rows["bundle"][NOT_FISH])
    passing = [predictor.classes[i]["label"] for i in outputs[NOT_FISH][PROBABILITIES].argmax(axis=1)[through]]

    print(f"bundle {args.bundle}: {predictor.model_name}, mahalanobis at power {power:g}; thresholds flag "
          f"{rate:.0%} of validation fish; the last column's flags at most {MAX_TEST_FISH_RATE:.0%} of test fish")
    print(f"{'detector':<20}{'AUROC':>8}{TEST_FISH:>12}{NOT_FISH:>12}{FISH_ELSEWHERE:>16}{'not-fish at 1% test':>22}")
    results = {}
    for name, scores in rows.items():
        results[name] = figures(scores, validation_threshold(scores["val"], rate))
        flagged = results[name]["flagged"]
        print(f"{name:<20}{results[name]['auroc']:>8.4f}{flagged[TEST_FISH]:>12.1%}{flagged[NOT_FISH]:>12.1%}"
              f"{flagged[FISH_ELSEWHERE]:>16.1%}{results[name]['not_fish_at_1pct_test_fish']:>22.1%}")

    top = np.argsort(-rows["bundle"][TEST_FISH])[: 3 * int(np.ceil(MAX_TEST_FISH_RATE * len(labels["test"])))]
    strangest = Counter(predictor.classes[i]["label"] for i in labels["test"][top])
    print(f"\nnot-fish the bundle lets through ({len(passing)} of {len(paths[NOT_FISH])}), by the label it gives them: "
          + ", ".join(f"{label} {n}" for label, n in Counter(passing).most_common()))
    print(f"classes of the {len(top)} highest-scoring test fish: "
          + ", ".join(f"{label} {n}" for label, n in strangest.most_common()))
    if args.json:
        summary = {"model": predictor.model_name, "rows": results, "passing_not_fish_labels": Counter(passing),
                   "highest_scoring_test_fish_classes": strangest}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


def fitted(embeddings, train_labels, power) -> dict:
    detector = fit_detector("mahalanobis", embeddings["train"], train_labels, power=power)
    return {group: detector.score(embeddings[group]) for group in GROUPS}


def standardised(scores) -> dict:
    """Each group's scores in units of the validation fish's spread, so that two detectors can be summed."""
    mean, spread = scores["val"].mean(), scores["val"].std()
    return {group: (values - mean) / spread for group, values in scores.items()}


def cross_fitted(embeddings, labels, power, folds=5) -> dict:
    """Fitted on train and validation embeddings; validation's own scores come from the fold left out."""
    both = np.concatenate([embeddings["train"], embeddings["val"]])
    both_labels = np.concatenate([labels["train"], labels["val"]])
    detector = fit_detector("mahalanobis", both, both_labels, power=power)
    scores = {group: detector.score(embeddings[group]) for group in GROUPS if group != "val"}
    scores["val"] = np.zeros(len(labels["val"]), np.float32)
    for kept, left_out in StratifiedKFold(folds, shuffle=True, random_state=0).split(embeddings["val"], labels["val"]):
        fold = fit_detector("mahalanobis", np.concatenate([embeddings["train"], embeddings["val"][kept]]),
                                   np.concatenate([labels["train"], labels["val"][kept]]), power=power)
        scores["val"][left_out] = fold.score(embeddings["val"][left_out])
    return scores


if __name__ == "__main__":
    main()
