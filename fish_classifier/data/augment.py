"""Topping up small training classes with augmented copies of their own images.

A train class with fewer than `min_per_class` images gets randomly flipped,
rotated, zoomed, brightened and contrasted copies of its originals, taken in turn,
until it has `min_per_class`. Each class draws from its own generator seeded by
`base.seed` and its label, so the same params and data give byte-identical files.
Validation and test images are never touched.
"""

import hashlib
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageStat
from tqdm import tqdm

from fish_classifier.data.manifest import MANIFEST_COLUMNS
from fish_classifier.images import open_rgb
from fish_classifier.params import Section, check_params, integer, number


class Augmentation(Section):
    """How far each random change may go: params.yaml's `augment` ranges."""

    max_rotation: number(ge=0, le=180, meaning=" (degrees either way)")
    max_zoom: number(ge=0, lt=1, meaning=" (fraction zoomed in, at most)")
    brightness: number(ge=0, lt=1, meaning=" (+/- fraction)")
    contrast: number(ge=0, lt=1, meaning=" (+/- fraction)")

    @classmethod
    def from_params(cls, augment_params: dict) -> "Augmentation":
        """The ranges in params.yaml's `augment` section; `min_per_class` is about the class, not the image."""
        return check_params(cls, {name: value for name, value in augment_params.items() if name != "min_per_class"},
                            "augment")

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """One random variant of `image`. Always draws the same five numbers, so streams stay aligned."""
        flip = rng.random() < 0.5
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        zoom = 1 + rng.uniform(0, self.max_zoom)
        brightness = 1 + rng.uniform(-self.brightness, self.brightness)
        contrast = 1 + rng.uniform(-self.contrast, self.contrast)
        # Left-right only: a fish photographed upside down is not a thing the model will meet.
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = _rotate_and_zoom(image, angle, zoom)
        image = ImageEnhance.Brightness(image).enhance(brightness)
        return ImageEnhance.Contrast(image).enhance(contrast)


class AugmentSettings(Augmentation):
    """params.yaml's `augment`: the ranges, and the count each train class is topped up to."""

    min_per_class: integer(ge=0)

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(**self.model_dump(exclude={"min_per_class"}))


def copies_needed(manifest: pd.DataFrame, min_per_class: int) -> dict[str, int]:
    """How many augmented copies each train class needs to reach `min_per_class` (classes short of it only)."""
    if min_per_class < 0:
        raise ValueError(f"augment.min_per_class must be >= 0, got {min_per_class}")
    counts = manifest.loc[manifest["split"] == "train", "label"].value_counts()
    return {label: min_per_class - int(n) for label, n in sorted(counts.items()) if n < min_per_class}


def augment_train(
    manifest: pd.DataFrame,
    out_dir: str | Path,
    *,
    min_per_class: int,
    seed: int,
    augmentation: Augmentation,
    repo_root: str | Path = ".",
) -> pd.DataFrame:
    """Write the augmented copies under out_dir/<label>/ and return their manifest rows.

    Image paths in `manifest` and in the result are relative to `repo_root`.
    """
    out_dir, repo_root = Path(out_dir), Path(repo_root)
    originals = manifest[(manifest["split"] == "train") & ~manifest["augmented"].astype(bool)]
    plan = copies_needed(originals, min_per_class)
    rows = []
    with tqdm(total=sum(plan.values()), desc="augment", unit="image") as bar:
        for label, needed in plan.items():
            sources = sorted(originals.loc[originals["label"] == label, "path"])
            rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
            for i in range(needed):
                source = sources[i % len(sources)]
                image = augmentation.apply(open_rgb(repo_root / source), rng)
                target = out_dir / label / f"{Path(source).stem}-aug{i:04d}.png"
                rows.append(_write_png(image, target, label=label, source=source, repo_root=repo_root))
                bar.update()
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _rotate_and_zoom(image: Image.Image, angle: float, zoom: float) -> Image.Image:
    """Rotate by `angle` degrees and zoom in by `zoom` about the centre, in one resampling."""
    # Corners uncovered by the rotation take the image's mean colour rather than black,
    # so the model does not learn that black triangles mean a rare class.
    fill = tuple(round(v) for v in ImageStat.Stat(image).mean)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    cx, cy = image.width / 2, image.height / 2
    # PIL wants the map from output to input pixels: scale by 1/zoom and rotate about the centre.
    a, b, d, e = cos / zoom, sin / zoom, -sin / zoom, cos / zoom
    matrix = (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)
    return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=fill)


def _write_png(image: Image.Image, target: Path, *, label: str, source: str, repo_root: Path) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # Pillow writes no timestamp chunk: same pixels, same bytes
    data = buffer.getvalue()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {
        "path": Path(os.path.relpath(target, repo_root)).as_posix(),
        "split": "train",
        "label": label,
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": image.width,
        "height": image.height,
        "augmented": True,
        "source": source,
    }
