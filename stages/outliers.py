"""Stage outliers: the photos drawn from `data.outlier_source` (data/outlier_source) and the users' not-fish photos
(data/feedback/not-fish) into data/outliers, the pool the unknown-photo detector may be fitted on, with
data/outliers/manifest.csv (path, origin: outlier_source or feedback, sha256). A drawn photo that is the same file
as a fish photo (data/manifest.csv) or a photo of the measuring set (data/unknown) stops the stage; each photo is
kept once, and near duplicates of a val, test or measuring-set photo are dropped and counted. Nothing drawn and no
feedback give an empty pool.

    python stages/outliers.py
"""

import sys

import pandas as pd

from fish_classifier.data.manifest import read_feedback_part, read_manifest
from fish_classifier.data.outlier_set import OutlierSourceError, collect_outlier_pool
from fish_classifier.data.prepare import PrepareSettings
from fish_classifier.layout import (FEEDBACK_NOT_FISH, MANIFEST, OUTLIER_SOURCE_DIR, OUTLIERS_DIR, OUTLIERS_MANIFEST,
                                    UNKNOWN_MANIFEST)
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    params = stage_params(prepare=PrepareSettings)
    try:
        pool = collect_outlier_pool(OUTLIER_SOURCE_DIR, read_feedback_part(FEEDBACK_NOT_FISH), read_manifest(MANIFEST),
                                    pd.read_csv(UNKNOWN_MANIFEST, dtype=str, keep_default_na=False), OUTLIERS_DIR,
                                    hash_size=params.prepare.hash_size,
                                    max_distance=params.prepare.near_duplicate_distance)
    except OutlierSourceError as exc:
        print(f"outliers failed: {exc}", file=sys.stderr)
        return 1
    pool.manifest.to_csv(OUTLIERS_MANIFEST, index=False)
    print("\n".join(pool.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
