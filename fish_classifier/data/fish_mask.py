"""The fish of a studio photo as a mask, and cut out: the `composite` stage's first step.

Every market species in the dataset lies on the same plain tray, so the border's colours (tray, shadow, the black
corners of the dataset's rotations) are clustered in CIELAB, the pixels far from all of them seed OpenCV's GrabCut,
and its largest region, holes filled, is the fish (`fish_mask`). A photo with no plain background gets a soft oval
(`oval_mask`) instead.
"""

from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

BORDER_CLUSTERS = 4  # the tray, its shadow and highlights, and the rotation corners


class MaskSettings(Protocol):
    """What `fish_mask` reads of params.yaml's `composite` (`composite.CompositeSettings`)."""

    mask_distance: float  # CIELAB distance from the border's colours that seeds the mask
    min_mask_share: float  # a mask covering less or more of the photo is no fish
    max_mask_share: float


def fish_mask(image: Image.Image, settings: MaskSettings) -> np.ndarray | None:
    """The subject of a studio photo as a boolean (height, width) mask, or None when no single subject
    covering between `min_mask_share` and `max_mask_share` of the photo stands out from its border."""
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)
    ring = np.zeros((height, width), bool)
    band = max(2, min(height, width) // 32)
    ring[:band], ring[-band:], ring[:, :band], ring[:, -band:] = True, True, True, True
    cv2.setRNGSeed(0)  # k-means and GrabCut draw from OpenCV's generator: the same mask every run
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    clusters = min(BORDER_CLUSTERS, int(ring.sum()))
    _, _, centres = cv2.kmeans(lab[ring], clusters, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    distance = np.min(np.linalg.norm(lab[:, :, None, :] - centres[None, None], axis=3), axis=2)
    far = settings.mask_distance
    seed = _largest_region(cv2.morphologyEx((distance > far).astype(np.uint8), cv2.MORPH_OPEN, _disc(3)))
    if seed is None:
        return None
    # GrabCut refines the seed: certain inside its eroded core, likely near it, certain on the border colours.
    labels = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
    labels[distance < far / 2] = cv2.GC_BGD
    labels[cv2.dilate(seed, _disc(5)) > 0] = cv2.GC_PR_FGD
    labels[cv2.erode(seed, _disc(5)) > 0] = cv2.GC_FGD
    labels[ring] = cv2.GC_BGD
    cv2.grabCut(pixels, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)
    subject = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    region = _largest_region(cv2.morphologyEx(subject, cv2.MORPH_CLOSE, _disc(5)))
    if region is None:
        return None
    mask = ndimage.binary_fill_holes(region)
    share = mask.mean()
    return mask if settings.min_mask_share <= share <= settings.max_mask_share else None


def oval_mask(size: tuple[int, int], share: float = 0.9) -> np.ndarray:
    """An oval filling `share` of each side of a (width, height) photo: the cut-out of a photo with no plain
    background, whose subject is most often in the middle."""
    width, height = size
    y, x = np.ogrid[:height, :width]
    across, down = (x - (width - 1) / 2) / (share * width / 2), (y - (height - 1) / 2) / (share * height / 2)
    return across**2 + down**2 <= 1


def cut_out(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The masked subject as RGBA, cropped to its bounding box, its edge softened by a pixel."""
    alpha = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(1))
    rgba = image.convert("RGB").copy()
    rgba.putalpha(alpha)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rgba.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))


def _disc(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def _largest_region(binary: np.ndarray) -> np.ndarray | None:
    count, regions, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    return (regions == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])).astype(np.uint8)
