"""How well the deploy bundle tells photos that are no fish from fish: its unknown-photo detector
(`is_unknown`) beside its low-confidence flag, on the dev test fish and the same brought down to
`select.unknown_small_px`, an unknown-photo set (by default the pipeline's, data/unknown: not-fish/ and
fish-elsewhere/), and generated images (scikit-learn's sample photos, noise, flat colours, rendered text, and
#31's tiny and solid-colour probes). Its "no content" column is the share flagged by
`fish_classifier.images.no_content` (too small, or one flat colour) whatever the detector says.

With --methods it also refits each detector method of `fish_classifier.evaluation.unknown_fit`, at several powers, on
the bundle's own LiteRT embeddings of the train photos (as select fits it: each also at `select.unknown_small_px`),
thresholds each on validation fish at `select.unknown_val_flag_rate`, and prints the same figures per method: how
`select.unknown_method` and `select.unknown_power` were chosen. Its "held-back outliers" column is the part of the
pipeline's outlier pool that `select.unknown_held_back` keeps out of the fit: with validation fish, what a method
should be chosen by. (Choosing by these figures makes them optimistic for the
chosen method; the threshold itself never sees an unknown photo.)

Usage (from the repo root, after `dvc repro`):
    python bench/unknown_rejection.py [--bundle models/deploy] [--unknown PATH] [--methods] [--json out.json]
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.data.manifest import CatchAllLabels, read_manifest, scored_split
from fish_classifier.data.unknown_set import GROUPS, NOT_FISH, collect_unknown_set
from fish_classifier.evaluation.bundle_detector import (HELD_BACK, head_weights, outlier_pool_for, small_copy,
                                                        train_embeddings)
from fish_classifier.evaluation.selection import SelectSettings
from fish_classifier.evaluation.unknown_fit import UnknownSettings, fit_unknown_detector
from fish_classifier.evaluation.unknown_report import auroc
from fish_classifier.layout import MANIFEST, UNKNOWN_DIR
from fish_classifier.params import stage_params
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR
from fish_classifier.serving.inference import EMBEDDING, IMAGENET, LiteRTBackend, outputs_for_files
from fish_classifier.serving.predictor import Predictor

DEFAULT_UNKNOWN = UNKNOWN_DIR / "photos"  # the unknowns stage's copy of data.unknown_source

WORDS = ["FISH", "hello world", "Lorem ipsum dolor", "404 not found", "SALE -50%", "receipt #1234",
         "The quick brown fox", "ABCDEFG", "dvc repro", "menu: soup, bread"]


def sample_photos() -> list[Image.Image]:
    """scikit-learn's two sample photos, whole and as four corner crops each."""
    from sklearn.datasets import load_sample_images

    photos = []
    for pixels in load_sample_images().images:
        height, width = pixels.shape[:2]
        photos.append(Image.fromarray(pixels))
        for top in (0, height // 2):
            for left in (0, width // 2):
                photos.append(Image.fromarray(pixels[top : top + height // 2, left : left + width // 2]))
    return photos


def noise_images(rng, count=10, size=256) -> list[Image.Image]:
    images = []
    for i in range(count):
        if i % 2:
            pixels = rng.normal(128, 60, (size, size, 3))
        else:
            pixels = rng.uniform(0, 255, (size, size, 3))
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


def flat_colours(rng, count=10, size=256) -> list[Image.Image]:
    fixed = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (255, 0, 0), (0, 128, 255), (255, 220, 0)]
    colours = fixed + [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(count - len(fixed))]
    return [Image.new("RGB", (size, size), colour) for colour in colours]


def text_images(rng, size=256) -> list[Image.Image]:
    font = ImageFont.load_default(size=28)
    images = []
    for word in WORDS:
        background = tuple(int(c) for c in rng.integers(150, 256, 3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        for line in range(4):
            draw.text((10, 20 + 60 * line), word, fill=(0, 0, 0), font=font)
        images.append(image)
    return images


def settings():
    """The select stage's settings and the data limits and labels this bench reads, checked as the stages check them."""
    return (stage_params(select=SelectSettings).select, stage_params(data=UnpackLimits).data,
            stage_params(data=CatchAllLabels).data)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE_DIR))
    parser.add_argument("--manifest", default=str(MANIFEST))
    parser.add_argument("--unknown", default=str(DEFAULT_UNKNOWN), help="zip or folder: not-fish/, fish-elsewhere/")
    parser.add_argument("--methods", action="store_true", help="also refit and compare every detector method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    predictor = Predictor(args.bundle)
    select, limits, labels = settings()
    manifest = read_manifest(args.manifest)
    rng = np.random.default_rng(args.seed)
    sets = {"dev test fish": list(scored_split(manifest, "test")["path"])}
    with tempfile.TemporaryDirectory() as work:
        if Path(args.unknown).exists():
            unknowns = collect_unknown_set(args.unknown, Path(work), limits).manifest
            sets.update({group: list(rows["path"]) for group, rows in unknowns.groupby("group")})
        else:
            print(f"no unknown-photo set at {args.unknown}: only the generated images are scored")
        # #30 item 4: the outlier pool's photos are small, and a small phone photo of a fish must not look unknown.
        sets[f"test fish at {select.unknown_small_px} px"] = [small_copy(path, select.unknown_small_px)
                                                             for path in sets["dev test fish"]]
        sets.update({"sklearn sample photos": sample_photos(), "noise": noise_images(rng),
                     "flat colours": flat_colours(rng), "rendered text": text_images(rng),
                     # #31's probe: 1,509 of 2,000 such squares were neither unknown nor low-confidence
                     "solid 8x8 squares": flat_colours(rng, count=2000, size=8),
                     "noise 16x16": noise_images(rng, count=100, size=16),
                     "1x1 green": [Image.new("RGB", (1, 1), (0, 255, 0))]})
        results = {name: predictor.predict(images, top_k=1) for name, images in sets.items()}
        rows = {name: _flag_row(predictions) for name, predictions in results.items()}
        print(f"bundle {args.bundle}: model {predictor.model_name}, unknown-photo detector "
              f"{predictor.detector.method if predictor.detector else 'none'}, threshold "
              f"{predictor.detector.threshold if predictor.detector else float('nan'):.4g}; "
              f"low-confidence threshold {predictor.threshold:.4f}")
        print(f"{'set':<24}{'images':>8}{'unknown':>10}{'no content':>12}{'low conf.':>11}{'catch-all label':>17}")
        catch_all = set(labels.catch_all_labels)
        for name, row in rows.items():
            labelled = np.mean([p.label in catch_all for p in results[name] if p.error is None])
            print(f"{name:<24}{row['images']:>8}{row['unknown']:>10.1%}{row['no_content']:>12.1%}"
                  f"{row['low_confidence']:>11.1%}{labelled:>17.1%}")
        comparison = compare_methods(predictor, manifest, sets, select) if args.methods else None
    if args.json:
        summary = {"model": predictor.model_name, "sets": rows, "methods": comparison}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


def compare_methods(predictor, manifest, sets, select: SelectSettings) -> list[dict]:
    """Each method (and power) refitted on the bundle's embeddings, thresholded on validation fish alone; with the
    bundle's ImageNet branch, the relative detector with the ImageNet head's score at several weights too."""
    backend = LiteRTBackend(predictor.bundle.serving_model_path)
    batch = select.batch_size
    train, labels = train_embeddings(backend, scored_split(manifest, "train"), predictor.classes,
                                     select.unknown_small_px, batch_size=batch)  # as select fits the bundle's
    val = outputs_for_files(backend, scored_split(manifest, "val")["path"], batch_size=batch, desc="val")
    groups = {name: outputs_for_files(backend, paths, batch_size=batch, desc=name)
              for name, paths in sets.items() if name in ("dev test fish", *GROUPS) or name.startswith("test fish at")}
    head = head_weights(predictor.bundle.model_path) if predictor.bundle.model_path is not None else None
    rate = select.unknown_val_flag_rate
    table = []
    candidates = [("knn", p, k, 0.0) for p in (1.0, 0.5) for k in (1, 5)]
    candidates += [("mahalanobis", p, 1, 0.0) for p in (1.0, 0.5, 0.35)]
    candidates += [("energy", 1.0, 1, 0.0)] if head is not None else []
    # The relative rows: the pipeline's data/outliers, when it holds photos, split as select splits it.
    auto = UnknownSettings("mahalanobis", 0.5, 1, rate, "auto")
    pooled, pool, held = outlier_pool_for(auto, select.unknown_held_back)
    pool_embeddings = outputs_for_files(backend, pool, batch_size=batch, desc="outlier pool")[EMBEDDING] \
        if pooled.outliers == "relative" else None
    if held:
        groups[HELD_BACK] = outputs_for_files(backend, held, batch_size=batch, desc=HELD_BACK)
    print(f"\nevery method refitted on {len(labels)} train embeddings (each train photo, and it at "
          f"{select.unknown_small_px} px), threshold flagging {rate:.1%} of validation fish")
    widths = {name: max(16, len(name) + 2) for name in groups}
    print(f"{'method':<46}{'AUROC':>8}" + "".join(f"{name:>{widths[name]}}" for name in groups))
    if pool_embeddings is not None:
        weights = (0.0, 0.25, 0.5, 1.0) if IMAGENET in val else (0.0,)  # the ImageNet head: only with its branch
        candidates += [("mahalanobis", p, "relative", w) for p in (0.5, 0.35) for w in weights]
    for method, power, k, weight in candidates:
        relative = k == "relative"
        settings = UnknownSettings(method, power, 1 if relative else k, rate, "relative" if relative else "ignore",
                                   imagenet_weight=weight)
        detector = fit_unknown_detector(settings, train, labels, val[EMBEDDING], head,
                                        outlier_embeddings=pool_embeddings if relative else None,
                                        val_imagenet=val.get(IMAGENET))
        scores = {name: detector.score_outputs(values) for name, values in groups.items()}
        flagged = {name: float(detector.is_unknown(values).mean()) for name, values in scores.items()}
        area = auroc(scores["dev test fish"], scores[NOT_FISH]) if NOT_FISH in scores else float("nan")
        name = f"{method} p={power:g}" + (f" k={k}" if method == "knn" else f" {k}" if relative else "")
        name += f" + ImageNet {weight:g}" if weight else ""
        print(f"{name:<46}{area:>8.4f}" + "".join(f"{flagged[g]:>{widths[g]}.1%}" for g in groups))
        table.append({"method": method, "power": power, "k": k, "imagenet_weight": weight, "auroc": area,
                      "flagged": flagged})
    return table


def _flag_row(predictions) -> dict:
    readable = [p for p in predictions if p.error is None]
    return {
        "images": len(predictions),
        "unknown": float(np.mean([p.is_unknown for p in readable])),
        "no_content": float(np.mean([p.unknown_reason is not None for p in readable])),  # images.no_content
        "low_confidence": float(np.mean([p.is_low_confidence for p in readable])),
        "median_unknown_score": float(np.median([p.unknown_score for p in readable])),
    }


if __name__ == "__main__":
    main()
