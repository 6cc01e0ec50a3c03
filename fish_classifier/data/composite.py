"""Fish cut out of the studio and put somewhere else: composites that stop a model leaning on the setting.

Every market species in the dataset lies on the same blue tray, in the same light, so a model can name
the tray instead of the fish. The studio's plain background makes each fish easy to cut out
(`fish_classifier.data.fish_mask`).
`composite_photo` then pastes the cut-out onto a real background at a random scale, angle and place,
with lighting and colour shifts, a chance of something covering part of it, blur and JPEG artefacts.

Each composite draws from a generator seeded by `base.seed`, its class and its number, so the same params
and photos give byte-identical files, in any order and on any number of processes.
"""

import fnmatch
import hashlib
import io
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter
from pydantic import ConfigDict, Field, model_validator
from tqdm import tqdm

from fish_classifier.contact_sheet import draw_contact_sheet, side_by_side, thumbnail
from fish_classifier.data.fish_mask import cut_out, fish_mask, oval_mask
from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.data.manifest import MANIFEST_COLUMNS, CatchAllLabels
from fish_classifier.images import open_rgb
from fish_classifier.params import Flag, Rule, Section, integer, number, refuse, text

class CompositeSourceSettings(UnpackLimits, CatchAllLabels):
    """What the composite stage reads from params.yaml's `data`: the backgrounds' source, how much a zip of it
    may unpack to, and the catch-all classes (not cut out: they are photographed anywhere already)."""

    background_source: text(empty=True, meaning=": a zip or folder of background photos, or empty for none")


class CompositeUsers(Section):
    """What the composite_sets stage reads from params.yaml's `train`: the models, and whether each trains on
    the composites (`train.<model>.composites`; the train stage checks the rest of each model's section)."""

    model_config = ConfigDict(extra="allow", frozen=True)  # each model's own section, by its name

    models: Annotated[list[str], Field(min_length=1), Rule("a non-empty list of model names")]

    @model_validator(mode="after")
    def _every_model_says(self):
        for name in self.models:
            section = (self.model_extra or {}).get(name)
            if not isinstance(section, dict) or not isinstance(section.get("composites"), bool):
                raise refuse(f"{name}.composites", (section or {}).get("composites") if isinstance(section, dict)
                             else None, "true or false")
        return self

    def uses(self, name: str) -> bool:
        return self.model_extra[name]["composites"]

    def using(self) -> list[str]:
        return [name for name in self.models if self.uses(name)]


class CompositeSettings(Section):
    """params.yaml's `composite`."""

    per_class: integer(ge=0)  # composites per cut-out class (its train photos taken in turn); 0: none
    size: integer(ge=32)  # px, side of each composite (square)
    background_classes: Annotated[list[str], Rule("a list of folder-name patterns (fnmatch), [] for all")]
    mask_distance: number(gt=0, meaning=" (CIELAB distance from the border's colours)")
    min_mask_share: number(gt=0, lt=1)
    max_mask_share: number(gt=0, le=1)
    min_scale: number(gt=0, le=2, meaning=" (the fish's longer side over the composite's side)")
    max_scale: number(gt=0, le=2)
    max_rotation: number(ge=0, le=180, meaning=" (degrees either way)")
    brightness: number(ge=0, lt=1, meaning=" (+/- fraction)")
    contrast: number(ge=0, lt=1, meaning=" (+/- fraction)")
    saturation: number(ge=0, lt=1, meaning=" (+/- fraction)")
    occlusion: number(ge=0, le=1, meaning=" (chance that a patch covers part of the fish)")
    soften: number(ge=0, le=1, meaning=" (chance that a composite is brought down to its background's sharpness)")
    catch_all: Flag  # also composite the catch-all classes' photos (a soft oval of each), so no class owns the look
    scene_share: number(ge=0, le=1, meaning=" (share of composites put onto a train photo of a class naming no species)")
    max_blur: number(ge=0, meaning=" (px, Gaussian radius)")
    jpeg_quality: Annotated[list[Annotated[int, Field(strict=True, ge=1, le=95)]], Field(min_length=2, max_length=2),
                            Rule("[lowest, highest], integers within [1, 95]", holds=lambda q: q[0] <= q[1])]
    shown: integer(ge=0)  # cut-outs and composites drawn in data/composite_masks.png

    @model_validator(mode="after")
    def _ranges_in_order(self):
        if self.min_scale > self.max_scale:
            raise refuse("min_scale", self.min_scale, f"<= max_scale ({self.max_scale})")
        if self.min_mask_share >= self.max_mask_share:
            raise refuse("min_mask_share", self.min_mask_share, f"< max_mask_share ({self.max_mask_share})")
        return self


def composite_photo(fish: Image.Image, background: Image.Image, cover: Image.Image, settings: CompositeSettings,
                    rng: np.random.Generator) -> bytes:
    """The RGBA `fish` on `background`, changed at random within `settings`, as a JPEG file's bytes; `cover`
    supplies the patch that may hide part of it. Always draws the same numbers, so streams stay aligned."""
    size = settings.size
    crop, left, top, flip = rng.uniform(0.6, 1.0), rng.random(), rng.random(), rng.random() < 0.5
    angle = rng.uniform(-settings.max_rotation, settings.max_rotation)
    scale = rng.uniform(settings.min_scale, settings.max_scale)
    centre = rng.uniform(0.2, 0.8, size=2)
    shifts = [1 + rng.uniform(-r, r) for r in (settings.brightness, settings.contrast, settings.saturation)]
    occluded, patch = rng.random() < settings.occlusion, rng.uniform(0.2, 0.45, size=4)
    blur = rng.uniform(0, settings.max_blur) if rng.random() < 0.5 else 0.0
    soften = rng.random() < settings.soften
    quality = int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1], endpoint=True))

    scene = _square_crop(background, crop, left, top)
    canvas = scene.resize((size, size), Image.Resampling.BICUBIC)
    if flip:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    fish = fish.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    fish = fish.resize(_fit_longer_side(fish.size, round(scale * size)), Image.Resampling.LANCZOS)
    for enhancer, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), shifts):
        fish = Image.merge("RGBA", (*enhancer(fish.convert("RGB")).enhance(factor).split(), fish.getchannel("A")))
    x, y = (int(c * size - s / 2) for c, s in zip(centre, fish.size))
    canvas.paste(fish, (x, y), fish)
    if occluded:  # a hand, a net, a rail: something between the camera and part of the fish
        w, h = max(1, int(patch[0] * fish.width)), max(1, int(patch[1] * fish.height))
        px, py = x + int(patch[2] * (fish.width - w)), y + int(patch[3] * (fish.height - h))
        canvas.paste(cover.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (px, py))
    if soften and scene.width < size:  # a sharp fish on a blown-up scene looks pasted: blow the fish up alike
        canvas = canvas.resize(scene.size, Image.Resampling.LANCZOS).resize((size, size), Image.Resampling.BICUBIC)
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=quality)  # libjpeg: the same pixels give the same bytes
    return buffer.getvalue()


def select_backgrounds(photos: list[Path], root: Path, patterns: list[str]) -> list[Path]:
    """The photos whose folder (any folder between `root` and the photo) matches one of `patterns`; all of
    them when `patterns` is empty."""
    if not patterns:
        return list(photos)
    return [p for p in photos if any(fnmatch.fnmatch(part, pattern)
                                     for part in p.relative_to(root).parts[:-1] for pattern in patterns)]


def composite_train(manifest: pd.DataFrame, backgrounds: list[Path], out_dir: str | Path, *,
                    settings: CompositeSettings, catch_all_labels: list[str], seed: int, workers: int = 1,
                    scene_labels: list[str] = (), repo_root: str | Path = ".") -> tuple[pd.DataFrame, list[dict]]:
    """Write `per_class` composites of each train class under out_dir/<label>/: the studio classes' fish cut
    out; the `catch_all_labels` photos (no plain background to cut from) as a soft oval of the whole photo,
    when `settings.catch_all` is on, so that the composites' look tells no class from another.

    A `settings.scene_share` of them go onto a train photo of the `scene_labels` classes (fish photographed
    anywhere, that name no species) in place of a background photo: a market species held by an angler or on a
    plate is still that species, so the catch-all class cannot be told by its settings either.

    Returns their manifest rows and the train photos no subject could be cut out of (path, reason).
    Paths in `manifest` and in the result are relative to `repo_root`.
    """
    out_dir, repo_root = Path(out_dir), Path(repo_root)
    originals = manifest[(manifest["split"] == "train") & ~manifest["augmented"].astype(bool)]
    labels = sorted(set(originals["label"]) - (set() if settings.catch_all else set(catch_all_labels)))
    if settings.per_class and labels and not backgrounds:
        raise ValueError("no background photos to composite onto: set data.background_source to a zip or folder "
                         "of photos (composite.background_classes picks its folders), or composite.per_class to 0")
    jobs = []
    for label in labels:
        sources = sorted(originals.loc[originals["label"] == label, "path"])
        jobs += [(label, i, sources[i % len(sources)]) for i in range(settings.per_class)]
    backgrounds = sorted(str(p) for p in backgrounds)
    scenes = sorted(str(repo_root / p) for p in originals.loc[originals["label"].isin(scene_labels), "path"])
    work = [(label, i, source, seed, (backgrounds, scenes), settings, label in catch_all_labels, str(out_dir),
             str(repo_root)) for label, i, source in jobs]
    rows, failed = [], []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for row in tqdm(pool.map(_make_one, work, chunksize=8), total=len(work), desc="composite", unit="image"):
            (rows if "reason" not in row else failed).append(row)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS), failed


def draw_composites(manifest: pd.DataFrame, composites: pd.DataFrame, settings: CompositeSettings,
                    path: str | Path, repo_root: str | Path = ".") -> None:
    """A contact sheet of `settings.shown` composites spread evenly over the classes, each beside its studio
    photo with the mask drawn on it (the rest of the photo darkened), to check the cut-outs by eye."""
    repo_root = Path(repo_root)
    pairs = []
    spread = np.unique(np.linspace(0, len(composites) - 1, min(settings.shown, len(composites))).astype(int))
    for row in composites.iloc[spread].itertuples():
        studio = open_rgb(repo_root / row.source)
        mask = fish_mask(studio, settings)
        if mask is None:  # a catch-all photo, composited as an oval
            mask = oval_mask(studio.size)
        shaded = Image.composite(studio, Image.eval(studio, lambda v: v // 4),
                                 Image.fromarray(mask.astype(np.uint8) * 255))
        shaded.thumbnail((128, 128))
        pairs.append((side_by_side(shaded, thumbnail(repo_root / row.path, 128)), row.label.split()[-1]))
    draw_contact_sheet(pairs, path, f"Studio photo with its mask, and a composite ({len(composites)} in all)",
                       columns=4, empty_message="No composites (data.background_source is empty)",
                       cell_inches=(3.0, 1.9))


def composite_rng(seed: int, label: str, index: int, *stream: int) -> np.random.Generator:
    """The generator of composite `index` of class `label`: the same numbers in any order, on any process;
    `stream` gives it further generators that leave the first one's numbers as they are."""
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8")), index, *stream])


def _make_one(job) -> dict:
    label, index, source, seed, (backgrounds, scenes), settings, whole, out_dir, repo_root = job
    image = open_rgb(Path(repo_root) / source)
    mask = oval_mask(image.size) if whole else fish_mask(image, settings)
    if mask is None:
        return {"path": source, "reason": "no single subject stands out from the photo's border"}
    rng = composite_rng(seed, label, index)
    background, cover = (backgrounds[k] for k in rng.integers(len(backgrounds), size=2))
    scene_rng = composite_rng(seed, label, index, 1)
    if scenes and not whole and scene_rng.random() < settings.scene_share:  # a real photo of another fish, fish and all
        background = scenes[scene_rng.integers(len(scenes))]
    data = composite_photo(cut_out(image, mask), open_rgb(background), open_rgb(cover), settings, rng)
    target = Path(out_dir) / label / f"{Path(source).stem}-comp{index:04d}.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {"path": Path(os.path.relpath(target, repo_root)).as_posix(), "split": "train", "label": label,
            "sha256": hashlib.sha256(data).hexdigest(), "width": settings.size, "height": settings.size,
            "augmented": True, "source": source}


def _square_crop(image: Image.Image, share: float, left: float, top: float) -> Image.Image:
    side = max(1, int(min(image.size) * share))
    x, y = int(left * (image.width - side)), int(top * (image.height - side))
    return image.crop((x, y, x + side, y + side))


def _fit_longer_side(size: tuple[int, int], longer: int) -> tuple[int, int]:
    w, h = size
    factor = max(1, longer) / max(w, h)
    return max(1, round(w * factor)), max(1, round(h * factor))
