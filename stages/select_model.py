"""Stage `select`: rank the evaluated models on validation, bundle the best one for deployment with its
unknown-photo detector and catch-all doubt, and write the comparison and the detector's figures.

Reads metrics/models/, models/zoo/ (every model of train.models), data/ (manifests, classes, photos), data/unknown and
data/outliers; writes models/deploy/ (built aside, moved into place whole: the model, its LiteRT export checked against
it, an example photo per species, the detector and the doubt, both fitted on the LiteRT model's outputs, thresholds set
on validation), metrics/summary.json and .md, and metrics/unknown/. data/unknown and data/field only measure."""

import sys

import pandas as pd

from fish_classifier.data.manifest import CatchAllLabels, example_photos, read_classes, read_manifest, scored_split
from fish_classifier.evaluation.bundle_detector import fit_bundle_detector, flag_photos, head_weights, outlier_pool_for
from fish_classifier.evaluation.catch_all_fit import add_bundle_doubt
from fish_classifier.evaluation.field import field_report
from fish_classifier.evaluation.selection import SelectSettings, choose_model, model_threshold
from fish_classifier.evaluation.summary import write_summary
from fish_classifier.evaluation.unknown_fit import EmptyOutlierPool
from fish_classifier.evaluation.unknown_report import write_unknown_plots
from fish_classifier.layout import (AUGMENTED_MANIFEST, CLASSES, DEPLOY_DIR, FIELD_PREDICTIONS_FILE, MANIFEST,
                                   MODEL_FILE, SUMMARY_JSON, SUMMARY_MD, UNKNOWN_MANIFEST, UNKNOWN_METRICS_DIR,
                                   metrics_dir, model_dir)
from fish_classifier.model.imagenet_branch import branch_for
from fish_classifier.params import stage_arguments, stage_params
from fish_classifier.serving.bundle import SERVING_MODEL_FILE, UNKNOWN_FILE
from fish_classifier.serving.bundle_publish import staged_bundle
from fish_classifier.serving.bundle_writer import add_examples, add_unknown_detector, training_data_hash, write_bundle
from fish_classifier.serving.export import evenly_spaced, export_for_serving
from fish_classifier.serving.inference import LiteRTBackend
from fish_classifier.training.settings import TrainedModels, TrainSettings


def main(argv=None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params(train=TrainedModels, select=SelectSettings, data=CatchAllLabels)
    select, names = params.select, params.train.models
    metrics, best, threshold = choose_model(names, select)
    classes, manifest = read_classes(CLASSES), read_manifest(MANIFEST)
    try:  # the outlier pool: photos that are no fish, fitting the detector when select.unknown_outliers allows
        unknown, outliers, held_back = outlier_pool_for(select.unknown, select.unknown_held_back)
    except EmptyOutlierPool as error:
        sys.exit(str(error))
    unknown, imagenet = branch_for(best, stage_params(train=TrainSettings.for_model(best)).train.model, unknown)
    with staged_bundle(DEPLOY_DIR) as deploy:
        write_bundle(deploy, model_path=model_dir(best) / MODEL_FILE, classes=classes, model_name=best,
                     temperature=metrics[best]["calibration"]["temperature"], threshold=threshold,
                     top_k=select.top_k, metrics=metrics[best],
                     data_hash=training_data_hash([MANIFEST, AUGMENTED_MANIFEST]),
                     parts=(SERVING_MODEL_FILE, UNKNOWN_FILE))  # added below; a bundle without them is refused
        print(f"selected {best} (validation {select.metric} {metrics[best]['val'][select.metric]:.4f})")
        parity = export_for_serving(deploy, evenly_spaced(scored_split(manifest, "test")["path"],
                                                          select.serving_parity_images), imagenet=imagenet)
        print(f"exported {SERVING_MODEL_FILE} ({'with' if imagenet is not None else 'no'} ImageNet branch): "
              + ", ".join(f"{key} {value:.1e}" for key, value in parity.items() if key.endswith("max_abs_diff")))
        add_examples(deploy, example_photos(manifest, classes), size=select.example_size)
        backend = LiteRTBackend(deploy / SERVING_MODEL_FILE)  # the detector sees what serving sees
        fitted = fit_bundle_detector(
            backend, manifest, classes, unknown, unknowns=pd.read_csv(UNKNOWN_MANIFEST),
            outlier_paths=outliers, held_back_paths=held_back, catch_all_labels=params.data.catch_all_labels,
            head=head_weights(deploy / MODEL_FILE) if unknown.method == "energy" else None,
            small_px=select.unknown_small_px, batch_size=select.batch_size)
        add_unknown_detector(deploy, fitted.detector, **fitted.details(unknown))
        doubt, doubt_figures = add_bundle_doubt(deploy, fitted.fish_outputs, classes, params.data.other_fish_labels,
                                                select.catch_all_doubt_rate)
        field = field_report(
            {name: pd.read_csv(metrics_dir(name) / FIELD_PREDICTIONS_FILE, keep_default_na=False) for name in names},
            lambda name: model_threshold(name, select), best, params.data.other_fish_labels,
            lambda paths: flag_photos(backend, fitted.detector, paths, batch_size=select.batch_size, doubt=doubt,
                                      classes=classes), metrics)

    write_unknown_plots(fitted.scores, fitted.detector, UNKNOWN_METRICS_DIR, bins=select.unknown_histogram_bins,
                        model=best)
    detector = {**fitted.fitted_on(asked=select.unknown_outliers), "catch_all_doubt": doubt_figures or None}
    write_summary(SUMMARY_JSON, SUMMARY_MD, metrics, select.metric, threshold, fitted.figures, field, detector=detector)
    print(fitted.line())


if __name__ == "__main__":
    main()
