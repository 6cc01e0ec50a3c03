"""`select` sets the catch-all doubt on the validation photos' outputs as the bundle's LiteRT model gives them (those
the detector's fit already computed), reports what it flags on the test photos, and has none for a model without an
ImageNet branch."""

import numpy as np
import pandas as pd
import pytest
from support.fixtures_models import CLASSES, TintBackend, write_tinted_images

from fish_classifier.evaluation.bundle_detector import flag_photos
from fish_classifier.evaluation.catch_all_fit import doubted_answers, fit_bundle_doubt
from fish_classifier.evaluation.unknown_fit import UnknownSettings, fit_unknown_detector
from fish_classifier.serving.inference import EMBEDDING, IMAGENET, PROBABILITIES, outputs_for_files

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


def fish_outputs(backend, manifest) -> dict:
    return {split: outputs_for_files(backend, manifest[manifest["split"] == split]["path"].tolist(), batch_size=5)
            for split in ("val", "test")}


def test_the_doubt_flags_the_set_share_of_validation_catch_all_answers_and_reports_the_test_photos(manifest):
    outputs = fish_outputs(BranchBackend(), manifest)
    doubt, figures = fit_bundle_doubt(outputs, CLASSES, [CATCH_ALL], 0.25)

    answered = outputs["val"][PROBABILITIES].argmax(axis=1) == 0
    assert answered.sum() >= 4  # the blue photos are answered with the catch-all
    flagged_val = doubted_answers(doubt, CLASSES, outputs["val"])
    assert flagged_val.sum() <= 0.25 * answered.sum() and flagged_val.sum() >= 1
    assert not flagged_val[~answered].any()  # only catch-all answers are ever doubted
    flagged_test = doubted_answers(doubt, CLASSES, outputs["test"])
    assert figures["test_flagged"] == pytest.approx(flagged_test.mean())
    assert figures["labels"] == [CATCH_ALL] and figures["rate"] == 0.25 and figures["threshold"] == doubt.threshold
    assert figures["test_catch_all_answers"] >= 4
    # The field photos get both verdicts from one run of the model: the detector's and the doubt's.
    test = manifest[manifest["split"] == "test"]["path"].tolist()
    detector = fit_unknown_detector(UnknownSettings("mahalanobis", 1.0, 1, 0.1), outputs["val"][EMBEDDING],
                                    outputs["val"][PROBABILITIES].argmax(axis=1), outputs["val"][EMBEDDING])
    unknown, doubted = flag_photos(BranchBackend(), detector, test, batch_size=5, doubt=doubt, classes=CLASSES)
    assert doubted.tolist() == flagged_test.tolist() and len(unknown) == len(test)


def test_no_imagenet_branch_or_no_catch_all_class_means_no_doubt(manifest):
    assert fit_bundle_doubt(fish_outputs(TintBackend(), manifest), CLASSES, [CATCH_ALL], 0.25) == (None, {})
    assert fit_bundle_doubt(fish_outputs(BranchBackend(), manifest), CLASSES, ["animal fish"], 0.25) == (None, {})
    assert doubted_answers(None, CLASSES, fish_outputs(TintBackend(), manifest)["test"]) is None
