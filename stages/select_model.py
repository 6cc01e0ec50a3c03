"""Stage `select`: rank the evaluated models on validation, bundle the best one for deployment with its
unknown-photo detector, and write the comparison and the detector's figures.

Reads metrics/models/<model>/ (metrics.json, val_confidence.csv) of every model of train.models, their
models/zoo/<model>/model.keras, data/ (manifests, classes, prepared photos) and data/unknown; writes the
deploy bundle models/deploy/ (with a thumbnail of the first test photo of each species, for the app to
offer), metrics/summary.json, metrics/summary.md and metrics/unknown/ (plots).

The bundle gets the Keras model and its LiteRT export for serving, checked against each other on test
images. The detector is fitted on the LiteRT model's embeddings of the train photos, its threshold set on
validation fish; the photos of data/unknown (params `data.unknown_source`) only measure it. The bundle is
built in a hidden sibling folder and takes the place of models/deploy only once complete (`staged_bundle`).

Named select_model.py because a stages/select.py would shadow the standard library's `select` module
for every script in this folder.
"""

import json
from pathlib import Path

import pandas as pd

from fish_classifier.data.manifest import CatchAllLabels, example_photos, label_indices, read_classes, read_manifest, scored_split
from fish_classifier.data.unknown_set import FISH_ELSEWHERE, GROUPS
from fish_classifier.evaluation.metrics import EvaluateSettings
from fish_classifier.evaluation.field import BUNDLE, field_figures
from fish_classifier.evaluation.selection import (
    TEST_FISH,
    SelectSettings,
    TrainedModels,
    model_threshold,
    fit_unknown_detector,
    rank_models,
    summary,
    summary_markdown,
    unknown_figures,
    write_unknown_plots,
)
from fish_classifier.layout import (
    FIELD_PREDICTIONS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    VAL_CONFIDENCE_FILE,
    metrics_dir,
    model_dir,
)
from fish_classifier.params import stage_arguments, stage_params
from fish_classifier.serving.bundle import (
    DEFAULT_BUNDLE_DIR,
    SERVING_MODEL_FILE,
    UNKNOWN_FILE,
    add_examples,
    add_unknown_detector,
    training_data_hash,
    write_bundle,
)
from fish_classifier.serving.bundle_publish import staged_bundle
from fish_classifier.serving.export import evenly_spaced, export_for_serving
from fish_classifier.serving.inference import EMBEDDING, PROBABILITIES, LiteRTBackend, outputs_for_files
from fish_classifier.splits import SPLITS

OUT = Path("metrics/unknown")


def main(argv=None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params(train=TrainedModels, select=SelectSettings, evaluate=EvaluateSettings, data=CatchAllLabels)
    names = params.train.models
    select = params.select
    settings = select.unknown

    metrics = {name: json.loads((metrics_dir(name) / METRICS_FILE).read_text(encoding="utf-8")) for name in names}
    best = rank_models(metrics, select.metric)[0]
    val_confidence = pd.read_csv(metrics_dir(best) / VAL_CONFIDENCE_FILE)["confidence"]
    threshold = model_threshold(best, select)
    classes = read_classes("data/classes.json")
    with staged_bundle(DEFAULT_BUNDLE_DIR) as deploy:
        write_bundle(
            deploy,
            model_path=model_dir(best) / MODEL_FILE,
            classes=classes,
            model_name=best,
            temperature=metrics[best]["calibration"]["temperature"],
            threshold=threshold,
            top_k=select.top_k,
            metrics=metrics[best],
            data_hash=training_data_hash(["data/manifest.csv", "data/augmented/manifest.csv"]),
            parts=(SERVING_MODEL_FILE, UNKNOWN_FILE),  # added below; a bundle without them is refused
        )
        print(f"selected {best} (validation {select.metric} {metrics[best]['val'][select.metric]:.4f}); "
              f"threshold {threshold:.4f} flags {(val_confidence < threshold).mean():.1%} of validation images")

        manifest = read_manifest("data/manifest.csv")
        parity = export_for_serving(deploy, evenly_spaced(scored_split(manifest, "test")["path"],
                                                          select.serving_parity_images))
        print(f"exported {DEFAULT_BUNDLE_DIR}/model.tflite: largest difference {parity['max_abs_diff']:.1e} "
              f"(probabilities), {parity['embedding_max_abs_diff']:.1e} (embeddings) on {parity['images']} test images")
        examples = add_examples(deploy, example_photos(manifest, classes), size=select.example_size)
        print(f"added {len(examples)} example photos (test split, one per species) to {DEFAULT_BUNDLE_DIR}")

        # The unknown-photo detector sees what serving sees: the LiteRT model's outputs.
        backend = LiteRTBackend(deploy / SERVING_MODEL_FILE)
        fish = {split: scored_split(manifest, split) for split in SPLITS}
        batch_size = params.evaluate.batch_size
        outputs = {split: outputs_for_files(backend, rows["path"], batch_size=batch_size, desc=f"{best} {split}")
                   for split, rows in fish.items()}
        head = None
        if settings.method == "energy":
            from fish_classifier.model.preprocessing import load_model

            head = load_model(deploy / "model.keras").get_layer("head").get_weights()
        detector = fit_unknown_detector(settings, outputs["train"][EMBEDDING],
                                        label_indices(fish["train"]["label"], classes), outputs["val"][EMBEDDING], head)

        unknowns = pd.read_csv("data/unknown/manifest.csv")
        scores = {TEST_FISH: detector.score(outputs["test"][EMBEDDING])}
        figures = None
        if len(unknowns):
            groups = {group: outputs_for_files(backend, rows["path"], batch_size=batch_size, desc=group)
                      for group, rows in unknowns.groupby("group") if group in GROUPS}
            scores.update({group: detector.score(out[EMBEDDING]) for group, out in groups.items()})
            elsewhere = groups.get(FISH_ELSEWHERE)
            figures = unknown_figures(
                detector, settings.val_flag_rate, scores,
                fish_elsewhere_labels=None if elsewhere is None else
                [classes[k]["label"] for k in elsewhere[PROBABILITIES].argmax(axis=1)],
                catch_all_labels=params.data.catch_all_labels,
            )
        add_unknown_detector(deploy, detector, power=settings.power, k=settings.k,
                             val_flag_rate=settings.val_flag_rate, figures=figures)

        # The field photos: each model flags by its own low-confidence threshold; the bundle by its detector too.
        predictions = {name: pd.read_csv(metrics_dir(name) / FIELD_PREDICTIONS_FILE, keep_default_na=False)
                       for name in names}
        field = {name: field_figures(rows, model_threshold(name, select), params.data.other_fish_labels)
                 for name, rows in predictions.items() if len(rows)}
        if field:
            unknown = detector.is_unknown(detector.score(outputs_for_files(
                backend, predictions[best]["path"], batch_size=batch_size, desc="field")[EMBEDDING]))
            field[BUNDLE] = field_figures(predictions[best], threshold, params.data.other_fish_labels, unknown)

    write_unknown_plots(scores, detector, OUT, bins=select.unknown_histogram_bins, model=best)
    Path("metrics/summary.json").write_text(
        json.dumps(summary(metrics, select.metric, threshold, figures, field), indent=2) + "\n", encoding="utf-8"
    )
    Path("metrics/summary.md").write_text(summary_markdown(metrics, select.metric, figures, field), encoding="utf-8")
    if figures:
        print(f"unknown photos ({settings.method}, threshold {detector.threshold:.4g}): "
              + ", ".join(f"{group} {share:.1%} flagged" for group, share in figures["flagged"].items())
              + f"; AUROC {figures['auroc_test_fish_vs_not_fish']:.4f}")
    else:
        print("no unknown-photo set (data.unknown_source is empty): unknown-photo figures skipped")


if __name__ == "__main__":
    main()
