"""Stage composite_sets: which composites each model trains on. Writes data/composite_sets/<model>.csv for
every model of params `train.models`: the rows of data/composited/manifest.csv for a model with
`train.<model>.composites`, none for the others.

A tiny stage of its own, so that a `train@<model>` stage depends on its own list alone: new composites
re-train only the models that use them, and a model's flag re-trains only that model.

    python stages/composite_sets.py
"""

import shutil

from fish_classifier.data.composite import CompositeUsers
from fish_classifier.data.manifest import read_manifest, write_manifest
from fish_classifier.layout import COMPOSITE_SETS_DIR, COMPOSITED_MANIFEST, composite_set
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> None:
    stage_arguments(__doc__, argv)
    users = stage_params(train=CompositeUsers).train
    composites = read_manifest(COMPOSITED_MANIFEST)
    shutil.rmtree(COMPOSITE_SETS_DIR, ignore_errors=True)
    COMPOSITE_SETS_DIR.mkdir(parents=True)
    for name in users.models:
        write_manifest(composites if users.uses(name) else composites.head(0), composite_set(name))
    print(f"{len(composites)} composites for {', '.join(users.using()) or 'no model'}; "
          f"none for {', '.join(n for n in users.models if not users.uses(n)) or 'no model'}")


if __name__ == "__main__":
    main()
