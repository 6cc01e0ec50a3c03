"""The feedback loop, simulated: a labelled photo set plays the app's users. Half of each class's photos
(by the sha256 of their bytes) is "marked" through the feedback store as a user would in the app: the deploy
bundle answers, the record holds that answer and the true label, and a reviewer accepts it. The other half
is copied out untouched, to be the field split that never trains.

Then the pipeline folds the accepted records in (`data.feedback_source` = the store's URL, all of its fish
photos to train) and `dvc metrics diff` scores the held-out half before and after (docs/feedback.md, "The loop,
measured", gives the commands and the figures):

    python bench/feedback_loop.py --photos ../shared/data/field-dev.zip --store sqlite:///../loop/feedback.db \
        --held-out ../loop/held-out

It prints how many photos went each way, what the bundle said about the marked ones, and how many held-out
photos are near duplicates (perceptual hash) of a marked one: such pairs make "after" optimistic.
"""

import argparse
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from fish_classifier.data.leakage import hamming_distances, perceptual_hash
from fish_classifier.data.photo_source import gather_photos
from fish_classifier.data.prepare import PrepareSettings
from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.feedback.store import FeedbackStore, ModelAnswer
from fish_classifier.images import open_rgb
from fish_classifier.params import stage_params
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, bundle_version, file_sha256
from fish_classifier.serving.predictor import Predictor


def split_halves(photos: list[Path]) -> tuple[list[Path], list[Path]]:
    """Per class folder, the photos in sha256 order: the 1st, 3rd, ... are marked, the others held out."""
    by_class: dict[str, list[tuple[str, Path]]] = {}
    for photo in photos:
        by_class.setdefault(photo.parent.name, []).append((file_sha256(photo), photo))
    marked, held_out = [], []
    for entries in by_class.values():
        for i, (_, photo) in enumerate(sorted(entries)):
            (marked if i % 2 == 0 else held_out).append(photo)
    return marked, held_out


def near_duplicates(marked: list[Path], held_out: list[Path], settings: PrepareSettings) -> int:
    """Held-out photos that are near duplicates of a marked photo, as the prepare stage counts them: perceptual
    hashes of `settings.hash_size` within `settings.near_duplicate_distance` bits."""
    if not marked or not held_out:
        return 0
    marks, held = (np.array([perceptual_hash(open_rgb(p), settings.hash_size) for p in photos])
                   for photos in (marked, held_out))  # each photo hashed once
    return int((hamming_distances(held, marks) <= settings.near_duplicate_distance).any(axis=1).sum())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", required=True, help="a zip or folder of <class folder>/<photo>")
    parser.add_argument("--store", required=True, help="the feedback store's SQLAlchemy URL (made if absent)")
    parser.add_argument("--held-out", required=True, type=Path, help="folder for the held-out half (replaced)")
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE_DIR))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        params = stage_params(data=UnpackLimits, prepare=PrepareSettings)
        found = gather_photos(args.photos, Path(scratch) / "photos", params.data, "--photos", "")
        marked, held_out = split_halves(found.photos)
        predictor = Predictor(args.bundle)
        species = [entry["label"] for entry in predictor.classes]
        strangers = sorted({p.parent.name for p in found.photos} - set(species))
        if strangers:
            parser.error(f"--photos has folders that are no species of the bundle: {', '.join(strangers)}")
        version = bundle_version(args.bundle)
        store = FeedbackStore(args.store)
        said = Counter()
        for photo, prediction in zip(marked, predictor.predict(marked)):
            store.add(photo.read_bytes(), photo.parent.name, ModelAnswer.of(prediction), version, species=species)
            said["right" if prediction.label == photo.parent.name and not prediction.is_unknown else
                 "unknown" if prediction.is_unknown else "wrong"] += 1
        accepted = store.set_status([r.id for r in store.records("new")], "accepted")
        shutil.rmtree(args.held_out, ignore_errors=True)
        for photo in held_out:
            target = args.held_out / photo.parent.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, target)
        print(f"{len(found.photos)} photos: {len(marked)} marked through {args.store} ({accepted} accepted), "
              f"{len(held_out)} held out in {args.held_out}")
        print(f"the bundle ({version}) on the marked photos: {said['right']} right, {said['wrong']} wrong, "
              f"{said['unknown']} unknown")
        print(f"held-out photos that are near duplicates (phash <= {params.prepare.near_duplicate_distance}) of a "
              f"marked one: {near_duplicates(marked, held_out, params.prepare)}")
        for name, group in (("marked", marked), ("held out", held_out)):
            counts = Counter(p.parent.name for p in group)
            print(f"  {name}: " + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
