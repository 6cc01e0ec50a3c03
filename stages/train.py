"""Stage train@<model>: fit one model of the zoo on data/manifest.csv's train photos, data/augmented and the
composites data/composite_sets/<model>.csv lists (none unless params `train.<model>.composites`; classes from
data/classes.json, settings from params `base.seed`, `augment` and `train`), and save it as
models/zoo/<model>/model.keras, with its training curves in models/zoo/<model>/live/. A fit whose loss goes
nan or infinite, or a val split short of a class, fails the stage in one line, with no model.keras left.

    python stages/train.py mobilenetv2
"""

import logging
import os
import sys
import tempfile
from pathlib import Path

from dvclive import Live
from dvclive.keras import DVCLiveCallback

from fish_classifier.data.augment import AugmentSettings
from fish_classifier.data.manifest import DatasetError
from fish_classifier.layout import AUGMENTED_MANIFEST, CLASSES, MANIFEST, MODEL_FILE, composite_set, model_dir
from fish_classifier.model.zoo import zoo_model
from fish_classifier.params import Base, stage_arguments, stage_params
from fish_classifier.training.multi_worker import is_chief
from fish_classifier.training.finite_loss import TrainingError
from fish_classifier.training.pixels import load_training_data
from fish_classifier.training.settings import TrainSettings
from fish_classifier.training.trainer import train_model

PARTIAL_PREFIX = ".partial-"  # a model being saved, in the model's own folder

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main(argv=None) -> int:
    name = stage_arguments(__doc__, argv, model=zoo_model).model
    params = stage_params(base=Base, augment=AugmentSettings, train=TrainSettings.for_model(name))
    # Under train.strategy multi_worker only the chief writes outputs; the other workers keep theirs in a scratch folder.
    out = model_dir(name) if is_chief() else Path(tempfile.mkdtemp(prefix=f"fish-worker-{name}-"))
    # An earlier run's model goes first: a failed run leaves none that evaluate could take for its own.
    for earlier in (out / MODEL_FILE, *out.glob(PARTIAL_PREFIX + "*")):
        earlier.unlink(missing_ok=True)
    try:
        data = load_training_data(MANIFEST, AUGMENTED_MANIFEST, CLASSES, composite_set(name))
        out.mkdir(parents=True, exist_ok=True)
        # DVC runs this stage; DVCLive only writes the curves, it makes no experiment of its own.
        with Live(str(out / "live"), save_dvc_exp=False, dvcyaml=None) as live:
            model = train_model(name, data, params.train, params.base.seed, callbacks=[DVCLiveCallback(live=live)],
                                augmentation=params.augment.augmentation)
    except (TrainingError, DatasetError) as exc:
        print(f"train failed: {exc}", file=sys.stderr)
        return 1
    # Saved under another name, then renamed: a run killed while saving leaves no model.keras that looks whole.
    partial = out / f"{PARTIAL_PREFIX}{os.getpid()}.keras"
    model.save(partial)
    partial.replace(out / MODEL_FILE)
    role = "" if is_chief() else f"; a worker's copy, the chief writes {model_dir(name) / MODEL_FILE}"
    print(f"saved {out / MODEL_FILE} ({len(data.classes)} classes, input {model.input_shape[1]}px{role})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
