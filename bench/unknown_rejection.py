"""How well the low-confidence flag rejects images that are not fish, at the deploy bundle's threshold.

Runs the bundle on the test split of data/manifest.csv (real fish) and on non-fish images:
scikit-learn's sample photos (whole and cropped), generated noise, flat colours and rendered
text. Prints the share flagged low-confidence in each set, and the test split's accuracy and
ECE of the calibrated confidence.

Usage (from the repo root, after `dvc repro`):
    python bench/unknown_rejection.py [--bundle models/deploy] [--manifest data/manifest.csv] [--json out.json]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fish_classifier.manifest import read_manifest, scored_split
from fish_classifier.metrics import expected_calibration_error
from fish_classifier.params import load_params
from fish_classifier.predictor import Predictor

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="models/deploy")
    parser.add_argument("--manifest", default="data/manifest.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    predictor = Predictor(args.bundle)
    bins = load_params()["evaluate"]["ece_bins"]
    manifest = read_manifest(args.manifest)
    test = scored_split(manifest, "test")
    fish = predictor.predict(list(test["path"]), top_k=1)
    readable = [(p, label) for p, label in zip(fish, test["label"]) if p.error is None]
    confidence = np.array([p.confidence for p, _ in readable])
    correct = np.array([p.label == label for p, label in readable])

    rng = np.random.default_rng(args.seed)
    non_fish = {
        "sklearn sample photos": sample_photos(),
        "noise": noise_images(rng),
        "flat colours": flat_colours(rng),
        "rendered text": text_images(rng),
    }
    results = {"dev test fish": fish}
    for name, images in non_fish.items():
        results[name] = predictor.predict(images, top_k=1)
    results["all non-fish"] = [p for name in non_fish for p in results[name]]
    rows = {name: _flag_row(predictions) for name, predictions in results.items()}
    ece = expected_calibration_error(confidence, correct, bins)

    print(f"bundle {args.bundle}: model {predictor.model_name}, threshold {predictor.threshold:.4f}, "
          f"temperature {predictor.temperature:.3f}")
    print(f"{'set':<24}{'images':>8}{'flagged':>10}{'median confidence':>20}")
    for name, row in rows.items():
        print(f"{name:<24}{row['images']:>8}{row['flagged']:>10.1%}{row['median_confidence']:>20.4f}")
    print(f"test accuracy {correct.mean():.4f}, ECE ({bins} bins, calibrated) {ece:.4f}")
    if args.json:
        summary = {"model": predictor.model_name, "threshold": predictor.threshold,
                   "test_accuracy": float(correct.mean()), "ece": ece, "sets": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


def _flag_row(predictions) -> dict:
    readable = [p for p in predictions if p.error is None]
    return {
        "images": len(predictions),
        "flagged": float(np.mean([p.is_low_confidence for p in readable])),
        "median_confidence": float(np.median([p.confidence for p in readable])),
    }


if __name__ == "__main__":
    main()
