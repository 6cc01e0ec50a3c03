"""Stage feedback: gather the users' corrections (params `data.feedback_source`: a folder or zip of
<species>/<photo> and not-fish/<photo>, or a feedback database URL whose accepted records are exported) into
data/feedback/train (extra train photos, for `prepare`), data/feedback/field (scored beside test, for `field`)
and data/feedback/not-fish (for the outlier pool), each with a manifest.csv (path, label, sha256). A fish photo
goes to train or field by its hash (`data.feedback_train_share`). An empty source gives three empty parts.

DVC sees the parameter, not what the source holds: after new feedback, `dvc repro -f -s feedback`, then `dvc repro`.

    python stages/feedback.py
"""

import sys

from fish_classifier.data.feedback_set import FeedbackSetSettings, collect_feedback
from fish_classifier.data.manifest import DatasetError, find_classes
from fish_classifier.data.unzip import DownloadError
from fish_classifier.layout import FEEDBACK_DIR, RAW_DIR
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    data = stage_params(data=FeedbackSetSettings).data
    try:
        # The species: the train folders, as prepare reads them (not classes.json: prepare follows).
        labels = [entry["label"] for entry in find_classes(RAW_DIR)]
        feedback = collect_feedback(data.feedback_source, FEEDBACK_DIR, data, labels)
    except (DownloadError, DatasetError) as exc:
        print(f"feedback failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(feedback.lines(data.feedback_source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
