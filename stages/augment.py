"""Stage augment: top up every train class below params `augment.min_per_class` with augmented
copies, written to data/augmented/<label>/ with their own data/augmented/manifest.csv.

    python stages/augment.py
"""

import shutil

from fish_classifier.data.augment import AugmentSettings, augment_train
from fish_classifier.data.manifest import read_manifest, write_manifest
from fish_classifier.layout import AUGMENTED_DIR, AUGMENTED_MANIFEST, MANIFEST
from fish_classifier.params import Base, stage_arguments, stage_params


def main(argv=None) -> None:
    stage_arguments(__doc__, argv)
    params = stage_params(base=Base, augment=AugmentSettings)
    manifest = read_manifest(MANIFEST)

    shutil.rmtree(AUGMENTED_DIR, ignore_errors=True)
    AUGMENTED_DIR.mkdir(parents=True)
    augmented = augment_train(
        manifest,
        AUGMENTED_DIR,
        min_per_class=params.augment.min_per_class,
        seed=params.base.seed,
        augmentation=params.augment.augmentation,
    )
    write_manifest(augmented, AUGMENTED_MANIFEST)

    per_class = augmented["label"].value_counts().sort_index()
    print(f"{len(augmented)} augmented train images" + "".join(f"\n  {label}: +{n}" for label, n in per_class.items()))


if __name__ == "__main__":
    main()
