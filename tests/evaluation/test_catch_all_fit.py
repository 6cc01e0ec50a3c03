"""`select` sets the catch-all doubt on the validation photos as the bundle's LiteRT model answers them, reports what
it flags on the test photos, and has none for a model without an ImageNet branch."""

import numpy as np
import pandas as pd
import pytest
from support.fixtures_models import CLASSES, TintBackend, write_tinted_images

from fish_classifier.evaluation.catch_all_fit import doubt_photos, fit_bundle_doubt
from fish_classifier.serving.inference import IMAGENET, PROBABILITIES, outputs_for_files

CATCH_ALL = CLASSES[0]["label"]  # the blue photos stand for the catch-all class


class BranchBackend(TintBackend):
    """TintBackend with an ImageNet branch that puts the photo's green share on goldfish (a fish of no species)."""

    def outputs(self, batch):
        out = super().outputs(batch)
        green = out[PROBABILITIES][:, 1]
        probs = np.zeros((len(batch), 1000))
        probs[:, 1], probs[:, 0] = green, 1 - green
        return {**out, IMAGENET: probs}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("doubt")
    rows = [{"path": path, "split": split, "label": CLASSES[k]["label"], "augmented": False}
            for split in ("val", "test") for path, k in write_tinted_images(root / split, per_class=8, seed=len(split))]
    return pd.DataFrame(rows)


def test_the_doubt_flags_the_set_share_of_validation_catch_all_answers_and_reports_the_test_photos(manifest):
    doubt, figures = fit_bundle_doubt(BranchBackend(), manifest, CLASSES, [CATCH_ALL], 0.25, batch_size=5)

    backend = BranchBackend()
    val = manifest[manifest["split"] == "val"]["path"].tolist()
    answered = outputs_for_files(backend, val, batch_size=5)[PROBABILITIES].argmax(axis=1) == 0
    assert answered.sum() >= 4  # the blue photos are answered with the catch-all
    flagged_val = doubt_photos(backend, doubt, CLASSES, val, batch_size=5)
    assert flagged_val.sum() <= 0.25 * answered.sum() and flagged_val.sum() >= 1
    assert not flagged_val[~answered].any()  # only catch-all answers are ever doubted
    test = manifest[manifest["split"] == "test"]["path"].tolist()
    flagged_test = doubt_photos(backend, doubt, CLASSES, test, batch_size=5)
    assert figures["test_flagged"] == pytest.approx(flagged_test.mean())
    assert figures["labels"] == [CATCH_ALL] and figures["rate"] == 0.25 and figures["threshold"] == doubt.threshold
    assert figures["test_catch_all_answers"] >= 4


def test_no_imagenet_branch_or_no_catch_all_class_means_no_doubt(manifest):
    assert fit_bundle_doubt(TintBackend(), manifest, CLASSES, [CATCH_ALL], 0.25, batch_size=5) == (None, {})
    assert fit_bundle_doubt(BranchBackend(), manifest, CLASSES, ["animal fish"], 0.25, batch_size=5) == (None, {})
    paths = manifest["path"].tolist()[:3]
    assert doubt_photos(TintBackend(), None, CLASSES, paths, batch_size=5).tolist() == [False] * 3
