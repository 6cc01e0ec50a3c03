"""Stage prepare: decode every image of data/raw, keep the usable ones as RGB in data/prepared,
and write data/manifest.csv, data/classes.json, data/prepare_report.json (skipped files,
counts and train/val/test leakage) and data/near_duplicates.png (the closest near-duplicate pairs).
The users' feedback photos bound for train (data/feedback/train) join train, less those that duplicate a
val or test photo (listed in the report and drawn).

    python stages/prepare.py
"""

import json
import shutil
import sys

from fish_classifier.data.leakage import find_leaks
from fish_classifier.data.leakage_plot import plot_near_duplicates, with_dropped_feedback
from fish_classifier.data.manifest import DatasetError, find_classes, read_feedback_part, write_classes, write_manifest
from fish_classifier.data.prepare import (
    PrepareSettings,
    fold_in_feedback,
    prepare_images,
    prepare_report,
    summary_lines,
)
from fish_classifier.layout import (
    CLASSES,
    FEEDBACK_TRAIN,
    MANIFEST,
    NEAR_DUPLICATES_PLOT,
    PREPARE_REPORT,
    PREPARED_DIR,
    RAW_DIR,
)
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    params = stage_params(prepare=PrepareSettings).prepare
    # An earlier run's outputs go first: a refused dataset leaves none that a later stage could take for its own.
    shutil.rmtree(PREPARED_DIR, ignore_errors=True)
    for output in (MANIFEST, CLASSES, PREPARE_REPORT, NEAR_DUPLICATES_PLOT):
        output.unlink(missing_ok=True)
    try:
        classes = find_classes(RAW_DIR, params.display_names)
        prepared = prepare_images(RAW_DIR, PREPARED_DIR, [c["label"] for c in classes], hash_size=params.hash_size)
        feedback = read_feedback_part(FEEDBACK_TRAIN)  # none when the feedback stage has not run
        folded = fold_in_feedback(prepared, feedback, PREPARED_DIR, hash_size=params.hash_size,
                                  max_distance=params.near_duplicate_distance)
        prepared = folded.dataset
    except DatasetError as exc:
        shutil.rmtree(PREPARED_DIR, ignore_errors=True)
        print(f"prepare failed: {exc}", file=sys.stderr)
        return 1
    manifest = prepared.manifest
    write_manifest(manifest, MANIFEST)
    write_classes(classes, CLASSES)

    leaks = find_leaks(manifest, prepared.hashes, params.near_duplicate_distance)
    report = prepare_report(classes, prepared, leaks, folded.report)
    PREPARE_REPORT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    label_of = dict(zip(manifest["path"], manifest["label"], strict=True)) | dict(zip(feedback["path"], feedback["label"]))
    display_of = {c["label"]: c["display"] for c in classes}
    plot_near_duplicates(with_dropped_feedback(leaks, folded.report["pairs"]), label_of, display_of,
                         NEAR_DUPLICATES_PLOT, limit=params.duplicate_pairs_shown,
                         max_distance=params.near_duplicate_distance)
    print("\n".join(summary_lines(report, feedback_offered=len(feedback))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
