"""Stage unknowns: gather the photos of params `data.unknown_source` (none of the species) into data/unknown,
with data/unknown/manifest.csv (path, group: not-fish or fish-elsewhere), for `select` to measure the
unknown-photo detector on. An empty source gives an empty set, and `select` skips those figures.

    python stages/unknowns.py
"""

import sys

from fish_classifier.data.unknown_set import UnknownSetSettings, collect_unknown_set
from fish_classifier.data.unzip import DownloadError
from fish_classifier.layout import UNKNOWN_DIR, UNKNOWN_MANIFEST
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    data = stage_params(data=UnknownSetSettings).data
    try:
        unknowns = collect_unknown_set(data.unknown_source, UNKNOWN_DIR, data)
    except DownloadError as exc:
        print(f"unknowns failed: {exc}", file=sys.stderr)
        return 1
    unknowns.manifest.to_csv(UNKNOWN_MANIFEST, index=False)
    print("\n".join(unknowns.lines(data.unknown_source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
