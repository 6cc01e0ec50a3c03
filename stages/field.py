"""Stage field: gather the photos of params `data.field_source` (the species photographed outside the studio,
in <class folder>/<photo> layout) and the users' feedback photos bound for the field split (data/feedback/field)
into data/field, with data/field/manifest.csv (path, label, origin: field_source or feedback), for `evaluate`
and `select` to report on. They never train or choose anything. No source and no feedback give an empty set.

    python stages/field.py
"""

import sys

from fish_classifier.data.unzip import DownloadError
from fish_classifier.data.field_set import FEEDBACK, FieldSetSettings, add_feedback_photos, collect_field_set
from fish_classifier.data.manifest import DatasetError, read_classes, read_feedback_part
from fish_classifier.layout import CLASSES, FEEDBACK_FIELD, FIELD_DIR, FIELD_MANIFEST
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    data = stage_params(data=FieldSetSettings).data
    labels = [entry["label"] for entry in read_classes(CLASSES)]
    try:
        field = collect_field_set(data.field_source, FIELD_DIR, data, labels)
    except (DownloadError, DatasetError) as exc:
        print(f"field failed: {exc}", file=sys.stderr)
        return 1
    field = add_feedback_photos(field, read_feedback_part(FEEDBACK_FIELD), FIELD_DIR)
    field.manifest.to_csv(FIELD_MANIFEST, index=False)
    if field.manifest.empty:
        print("data.field_source is empty and no feedback goes to the field split: no field photos, "
              "evaluate and select skip the field figures")
        return 0
    counts = field.manifest["label"].value_counts().sort_index()
    feedback = int((field.manifest["origin"] == FEEDBACK).sum())
    print(f"{len(field.manifest) - feedback} field photos from {data.field_source or '(no data.field_source)'} "
          f"and {feedback} from feedback, {len(field.skipped)} files skipped"
          + "".join(f"\n  {label}: {n}" for label, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
