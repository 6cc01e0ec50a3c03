"""A studio photo as the dataset's look, and the composite settings the tests start from
(tests/data/test_composite.py, tests/data/test_fish_mask.py)."""

import numpy as np
from PIL import Image, ImageDraw

from fish_classifier.data.composite import CompositeSettings

SETTINGS = dict(per_class=3, size=64, background_classes=[], mask_distance=30, min_mask_share=0.02,
                max_mask_share=0.7, min_scale=0.4, max_scale=1.0, max_rotation=45, brightness=0.3, contrast=0.3,
                saturation=0.3, occlusion=0.5, catch_all=False, scene_share=0.0, max_blur=1.5, soften=0.5,
                jpeg_quality=[40, 95], shown=4)


def settings(**changes) -> CompositeSettings:
    return CompositeSettings(**{**SETTINGS, **changes})


def studio_photo(seed=0, size=128):
    """A studio photo as the dataset's look: a fish-coloured ellipse on a noisy blue tray, black rotation corners.
    Returns the photo and the ellipse's true mask."""
    rng = np.random.default_rng(seed)
    tray = np.clip(rng.normal((40, 70, 150), 12, (size, size, 3)), 0, 255).astype(np.uint8)
    photo = Image.fromarray(tray)
    draw = ImageDraw.Draw(photo)
    corner = size // 5
    for x, y in ((0, 0), (size, 0), (0, size), (size, size)):  # the black triangles a rotation leaves
        draw.polygon([(x, y), (abs(x - corner), y), (x, abs(y - corner))], fill=(0, 0, 0))
    truth = Image.new("L", photo.size)
    box = (size * 0.25, size * 0.4, size * 0.8, size * 0.62)
    draw.ellipse(box, fill=(205, 160, 95))
    ImageDraw.Draw(truth).ellipse(box, fill=255)
    return photo, np.asarray(truth) > 0
