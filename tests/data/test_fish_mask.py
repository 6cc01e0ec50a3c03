import numpy as np
from PIL import Image

from fish_classifier.data.fish_mask import cut_out, fish_mask, oval_mask
from support.studio import settings, studio_photo


def test_the_mask_covers_the_fish_on_a_studio_like_photo_and_nothing_of_the_tray():
    photo, truth = studio_photo()
    mask = fish_mask(photo, settings())
    assert mask is not None and mask.shape == truth.shape
    overlap = (mask & truth).sum() / (mask | truth).sum()
    assert overlap > 0.9, overlap
    assert mask[truth].mean() > 0.95  # the fish is covered
    assert not mask[:10].any() and not mask[-10:].any()  # the tray and the black corners are not


def test_a_photo_with_no_subject_or_all_subject_is_not_cut_out():
    plain = Image.new("RGB", (64, 64), (40, 70, 150))
    assert fish_mask(plain, settings()) is None
    photo, _ = studio_photo()
    assert fish_mask(photo, settings(max_mask_share=0.05)) is None  # the fish covers more than 5%


def test_cut_out_is_cropped_to_the_fish_with_its_mask_as_alpha():
    photo, truth = studio_photo()
    fish = cut_out(photo, truth)
    rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
    assert fish.mode == "RGBA" and fish.size == (cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    alpha = np.asarray(fish.getchannel("A"))
    assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255 and alpha[0, 0] < 128


def test_oval_mask_fills_the_middle_and_leaves_the_corners():
    mask = oval_mask((40, 20))
    assert mask.shape == (20, 40) and mask[10, 20] and not mask[0, 0] and not mask[19, 39]
    assert 0.55 < mask.mean() < 0.7  # pi/4 of the 0.9 x 0.9 box: about 0.64
