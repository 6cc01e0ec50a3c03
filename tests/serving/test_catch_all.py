"""The catch-all doubt: a catch-all answer that ImageNet's head does not back with fish that are none of the species
is flagged, at a threshold set to flag a share of the validation catch-all answers, and nothing else is."""

import numpy as np
import pytest

from fish_classifier.serving.catch_all import (
    IMAGENET_FISH,
    IMAGENET_FISH_CLASSES,
    IMAGENET_OTHER_FISH_CLASSES,
    IMAGENET_SPECIES_LOOKALIKES,
    CatchAllDoubt,
    fit_catch_all_doubt,
    other_fish_mass,
)

OTHER = "animal fish"


def imagenet(masses) -> np.ndarray:
    """ImageNet probabilities with `mass` on the other fish (goldfish) and the rest on a tench (a fish of no side)."""
    probs = np.zeros((len(masses), 1000))
    probs[:, 1], probs[:, 0] = masses, 1 - np.asarray(masses)
    return probs


def test_the_imagenet_fish_classes_are_imagenets_fish_and_crustaceans():
    assert len(IMAGENET_FISH_CLASSES) == 25 and len(set(IMAGENET_FISH_CLASSES)) == 25
    assert IMAGENET_FISH_CLASSES == (*range(0, 7), *range(118, 127), *range(389, 398))  # as bundles recorded them
    assert {0, 1, 6, 118, 124, 126, 389, 397} <= set(IMAGENET_FISH_CLASSES)  # tench .. puffer
    assert not {7, 117, 127, 388, 398} & set(IMAGENET_FISH_CLASSES)  # cock, chambered nautilus, white stork, ...


def test_the_other_fish_are_the_fish_less_the_species_lookalikes_each_of_which_is_named_right():
    assert set(IMAGENET_SPECIES_LOOKALIKES) <= set(IMAGENET_FISH.values())  # a misspelt name would leave a class in
    assert IMAGENET_OTHER_FISH_CLASSES == (1, 2, 3, 4, 5, 6, 390, 392, 393, 394, 395, 396, 397)
    assert [IMAGENET_FISH[c] for c in (0, 124, 389, 391)] == ["tench", "crayfish", "barracouta", "coho"]


def test_the_mass_is_imagenets_probability_on_the_other_fish_and_nothing_else():
    probs = np.zeros((2, 1000))
    probs[0, [1, 392, 397]] = 0.1, 0.2, 0.3  # goldfish, rock beauty, puffer: other fish
    probs[1, [0, 389, 391, 124]] = 0.4, 0.3, 0.2, 0.1  # tench, barracouta, coho, crayfish: could be a species
    assert other_fish_mass(probs) == pytest.approx([0.6, 0.0])
    assert not {0, 389, 391, *range(118, 127)} & set(IMAGENET_OTHER_FISH_CLASSES)
    with pytest.raises(ValueError, match=r"expected ImageNet probabilities of 1000 classes, got shape \(1, 11\)"):
        other_fish_mass(np.ones((1, 11)))


def test_only_a_catch_all_answer_below_the_threshold_is_doubted():
    doubt = CatchAllDoubt((OTHER,), IMAGENET_OTHER_FISH_CLASSES, threshold=0.1, rate=0.25)
    answers = [OTHER, OTHER, OTHER, "fish sea_food trout", OTHER]
    masses = imagenet([0.05, 0.1, 0.9, 0.0, 0.0])
    masses[4] = np.nan  # a broken branch backs nothing
    assert doubt.doubts(answers, masses).tolist() == [True, False, False, False, True]
    with pytest.raises(ValueError, match="2 answers but ImageNet probabilities for 5 photos"):
        doubt.doubts(answers[:2], masses)


def test_the_threshold_flags_at_most_the_rate_of_the_validation_catch_all_answers():
    # Eight catch-all answers with masses 0.0, 0.1, ..., 0.7 (and species answers with no mass, which do not count).
    answers = [OTHER] * 8 + ["fish sea_food trout"] * 4
    masses = imagenet([k / 10 for k in range(8)] + [0.0] * 4)
    doubt = fit_catch_all_doubt(answers, masses, [OTHER], 0.25)
    # The lower 0.25-quantile of 0.0..0.7 is 0.1: 0.0 alone lies below it, 1 of 8 (at most a quarter).
    assert doubt.threshold == pytest.approx(0.1) and doubt.rate == 0.25
    assert doubt.doubts(answers, masses).sum() == 1
    assert fit_catch_all_doubt(answers, masses, [OTHER], 0.5).doubts(answers, masses).sum() == 3  # 0.0-0.2 < 0.3
    assert fit_catch_all_doubt(answers, masses, [OTHER], 0.0).doubts(answers, masses).sum() == 0
    # No validation photo answered with a catch-all: no threshold to set, and none flagged.
    assert fit_catch_all_doubt(answers[8:], masses[8:], [OTHER], 0.25).threshold == 0.0


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "high", True])
def test_a_rate_that_is_no_share_is_refused_naming_the_setting(rate):
    with pytest.raises(ValueError, match=r"select.catch_all_doubt_rate must be a share from 0 to 1, got"):
        fit_catch_all_doubt([OTHER], imagenet([0.5]), [OTHER], rate)


def test_the_rule_goes_through_json_and_a_bad_one_is_refused_naming_what_is_wrong():
    doubt = CatchAllDoubt((OTHER,), (1, 2), threshold=0.04, rate=0.25)
    assert CatchAllDoubt.from_json(doubt.to_json()) == doubt
    assert doubt.to_json() == {"labels": [OTHER], "imagenet_classes": [1, 2], "threshold": 0.04, "rate": 0.25}
    with pytest.raises(ValueError, match="must be an object with labels, imagenet_classes, threshold and rate"):
        CatchAllDoubt.from_json({"labels": [OTHER]})
    with pytest.raises(ValueError, match=r"ImageNet classes must be whole numbers from 0 to 999, got \(1, 1000\)"):
        CatchAllDoubt.from_json({**doubt.to_json(), "imagenet_classes": [1, 1000]})
    with pytest.raises(ValueError, match="threshold must be a number from 0 to 1, got 'low'"):
        CatchAllDoubt.from_json({**doubt.to_json(), "threshold": "low"})
    with pytest.raises(ValueError, match=r"needs one or more class labels, got \(\)"):
        CatchAllDoubt.from_json({**doubt.to_json(), "labels": []})
