"""Stage outlier_source: draw the photos that are no fish from params `data.outlier_source` (a zip, a folder or an
https URL to a zip, any folder layout) into data/outlier_source/photos: those outside the folders that
`data.outlier_exclude` names, at most `data.outlier_photos` of them drawn by `base.seed`; only they are unpacked.
It reads no fish, no feedback and no other stage's output, so a new dataset or new feedback never downloads the
source again. An empty source draws nothing.

    python stages/outlier_source.py
"""

import sys

from fish_classifier.data.outlier_draw import OutlierSetSettings, draw_outlier_source
from fish_classifier.data.unzip import DownloadError
from fish_classifier.layout import OUTLIER_SOURCE_DIR
from fish_classifier.params import Base, stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    params = stage_params(base=Base, data=OutlierSetSettings)
    try:
        drawn = draw_outlier_source(params.data, OUTLIER_SOURCE_DIR, seed=params.base.seed)
    except DownloadError as exc:
        print(f"outlier_source failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(drawn.lines(params.data.outlier_source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
