"""Stage composite: cut the fish of each studio class out of its train photos (data/manifest.csv) and put
them onto the background photos of params `data.background_source`, so that no class can be told by its
setting. Writes data/composited/<label>/*.jpg with data/composited/manifest.csv, and
data/composite_masks.png (cut-outs and composites side by side, to check the masks by eye).

The catch-all classes (params `data.catch_all_labels`) have no plain background to cut from: with
`composite.catch_all` a soft oval of each photo is composited instead, so that no class owns the composites' look.
With `composite.scene_share`, that share of the composites goes onto a train photo of `data.other_fish_labels`
(a real photo of another fish) instead. Knobs: params `composite` and `base.seed`. An empty
`data.background_source` makes no composites.

    python stages/composite.py
"""

import shutil
import sys
from pathlib import Path

from fish_classifier.cpus import cpu_threads
from fish_classifier.data.composite import (
    CompositeSettings,
    CompositeSourceSettings,
    composite_train,
    draw_composites,
    select_backgrounds,
)
from fish_classifier.data.scratch import scratch_folder
from fish_classifier.data.unzip import DownloadError
from fish_classifier.data.manifest import read_manifest, write_manifest
from fish_classifier.data.photo_source import gather_photos
from fish_classifier.layout import COMPOSITE_MASKS_PLOT, COMPOSITED_DIR, COMPOSITED_MANIFEST, MANIFEST
from fish_classifier.params import Base, stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    params = stage_params(base=Base, data=CompositeSourceSettings, composite=CompositeSettings)
    settings = params.composite
    manifest = read_manifest(MANIFEST)
    shutil.rmtree(COMPOSITED_DIR, ignore_errors=True)
    COMPOSITED_DIR.mkdir(parents=True)

    with scratch_folder(COMPOSITED_DIR.parent, ".backgrounds-tmp-") as scratch:
        try:
            found = gather_photos(params.data.background_source, Path(scratch) / "photos", params.data,
                                  "data.background_source", "to make no composites")
        except DownloadError as exc:
            print(f"composite failed: {exc}", file=sys.stderr)
            return 1
        backgrounds = select_backgrounds(found.photos, Path(scratch) / "photos", settings.background_classes)
        per_class = settings.per_class if backgrounds else 0
        composites, uncut = composite_train(manifest, backgrounds, COMPOSITED_DIR, settings=settings.model_copy(
            update={"per_class": per_class}), catch_all_labels=params.data.catch_all_labels, seed=params.base.seed,
            workers=cpu_threads(), scene_labels=params.data.other_fish_labels)
    write_manifest(composites, COMPOSITED_MANIFEST)
    draw_composites(manifest, composites, settings, COMPOSITE_MASKS_PLOT)

    if not backgrounds:
        print("data.background_source is empty (or composite.background_classes matches none of it): no composites")
        return 0
    per_label = composites["label"].value_counts().sort_index()
    print(f"{len(composites)} composites on {len(backgrounds)} backgrounds from {params.data.background_source}; "
          f"{len(uncut)} train photos could not be cut out" + "".join(f"\n  {k}: +{n}" for k, n in per_label.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
