"""The bundle's detector fitted and measured on a backend whose embedding is a photo's mean colour."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from support.fixtures_models import CLASSES, TintBackend, write_tinted_images

from fish_classifier.data.manifest import scored_split
from fish_classifier.evaluation.bundle_detector import (
    fit_bundle_detector,
    flag_photos,
    hold_back,
    outlier_pool_for,
    small_copy,
    train_embeddings,
)
from fish_classifier.evaluation.unknown_fit import EmptyOutlierPool, UnknownSettings, fit_unknown_detector
from fish_classifier.serving.catch_all import IMAGENET_FISH_CLASSES
from fish_classifier.serving.inference import EMBEDDING, IMAGENET, outputs_for_files
from fish_classifier.serving.unknown import RELATIVE


def _photos(folder, colours) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(colours))
    paths = []
    for i, colour in enumerate(colours):
        pixels = np.clip(np.array(colour) + rng.normal(0, 12, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths


@pytest.fixture
def project(tmp_path):
    rows = []
    for split, count in (("train", 20), ("val", 10), ("test", 5)):
        rows += [{"path": path, "split": split, "label": CLASSES[k]["label"], "augmented": False}
                 for path, k in write_tinted_images(tmp_path / split, count, seed=len(rows), size=24)]
    grey = [(128 + 10 * i, 128, 128 - 10 * i) for i in range(4)]  # no tint: neither fish nor the pool
    paths = _photos(tmp_path / "unknown", grey) + _photos(tmp_path / "elsewhere", [(40, 40, 200)])
    unknowns = pd.DataFrame({"path": paths, "group": ["not-fish"] * 4 + ["fish-elsewhere"]})
    pool = _photos(tmp_path / "pool", [(v, v, 60) for v in range(120, 240, 8)])  # yellows: no fish either
    return pd.DataFrame(rows), unknowns, pool


def test_relative_fits_on_the_pool_and_measures_only_test_fish_and_the_unknown_set(project):
    manifest, unknowns, pool = project
    settings = UnknownSettings("mahalanobis", 1.0, 1, 0.1, outliers="relative")

    fitted = fit_bundle_detector(TintBackend(), manifest, CLASSES, settings, unknowns=unknowns, outlier_paths=pool,
                                 catch_all_labels=[CLASSES[0]["label"]], small_px=16, batch_size=8)

    assert fitted.detector.method == RELATIVE and fitted.outlier_photos == len(pool) == 15
    # The measured groups and their counts: the pool's 15 photos are in none of them; the test fish are measured
    # again brought down to 16 px, where their tint, all this backend sees, is what it was: flagged as they are.
    groups = {"test fish": 15, "not-fish": 4, "fish-elsewhere": 1, "small test fish": 15}
    assert {group: len(scores) for group, scores in fitted.scores.items()} == groups
    assert fitted.figures["images"] == groups
    assert fitted.figures["flagged"]["small test fish"] == fitted.figures["flagged"]["test fish"]
    assert fitted.figures["outlier_photos"] == 15 and fitted.figures["fish_elsewhere_catch_all"] == 1.0
    details = fitted.details(settings)
    assert (details["outliers"], details["outlier_photos"], details["val_flag_rate"]) == ("relative", 15, 0.1)
    assert (details["small_px"], details["held_back_photos"]) == (16, 0)  # what fitted_on says, in bundle.json
    assert fitted.line().startswith("unknown photos (relative_mahalanobis, threshold ")
    # A yellow like the pool's scores above every test fish; a fish of a known tint does not get flagged.
    yellow = _photos(Path(pool[0]).parent.parent / "probe", [(200, 200, 60)])
    flags, doubted = flag_photos(TintBackend(), fitted.detector, yellow + list(manifest["path"].iloc[-1:]),
                                 batch_size=2)
    assert doubted is None  # no catch-all doubt given
    assert flags.tolist() == [True, False]


class SharpnessBackend(TintBackend):
    """TintBackend whose embedding also holds how sharp the photo is: what sets a small photo, scaled back up to
    the model's input, apart from a sharp one of the same fish."""

    input_size = 32

    def outputs(self, batch):
        out = super().outputs(batch)
        edges = np.abs(np.diff(np.asarray(batch, np.float32), axis=2)).mean(axis=(1, 2, 3))[:, None]
        return {**out, EMBEDDING: np.concatenate([out[EMBEDDING], edges], axis=1)}


def test_fitted_on_small_copies_of_the_train_fish_too_a_small_photo_of_a_fish_is_not_flagged(project):
    manifest, unknowns, _ = project
    settings, backend = UnknownSettings("mahalanobis", 1.0, 1, 0.1), SharpnessBackend()

    fitted = fit_bundle_detector(backend, manifest, CLASSES, settings, unknowns=unknowns, small_px=8, batch_size=8)

    train = scored_split(manifest, "train")
    embeddings, labels = train_embeddings(backend, train, CLASSES, 8, batch_size=8)
    assert len(embeddings) == len(labels) == 2 * len(train)  # each photo as it is, then brought down to 8 px
    assert (labels[: len(train)] == labels[len(train):]).all()
    assert embeddings[len(train):, 3].mean() < 0.5 * embeddings[: len(train), 3].mean()  # the small ones: softer
    assert fitted.small_px == 8 and fitted.fitted_on("auto")["small_px"] == 8
    assert fitted.figures["flagged"]["small test fish"] <= 0.2
    # Fitted on the sharp photos alone, the same detector takes every small photo of a fish for no fish.
    sharp, sharp_labels = train_embeddings(backend, train, CLASSES, None, batch_size=8)
    val = outputs_for_files(backend, scored_split(manifest, "val")["path"], batch_size=8)[EMBEDDING]
    sharp_only = fit_unknown_detector(settings, sharp, sharp_labels, val)
    assert sharp_only.is_unknown(sharp_only.score(embeddings[len(train):])).mean() > 0.9


def test_hold_back_keeps_about_its_share_of_the_pool_out_by_path_alone_and_never_leaves_fewer_than_two():
    paths = [f"data/outliers/photos/p{i}.jpg" for i in range(2000)]
    fit, held = hold_back(paths, 0.2)
    assert sorted(fit + held) == sorted(paths) and not set(fit) & set(held)
    assert 0.17 < len(held) / len(paths) < 0.23
    assert fit == [p for p in paths if p in set(fit)]  # the pool's order kept
    # A photo's side depends on its path alone: a bigger pool, or another order, moves none of them.
    more_fit, more_held = hold_back(paths[::-1] + [f"data/outliers/photos/q{i}.jpg" for i in range(500)], 0.2)
    assert set(held) <= set(more_held) and set(fit) <= set(more_fit)
    assert hold_back(paths, 0.0) == (paths, []) and hold_back(paths[:3], 1.0) == (paths[:3], [])


def test_the_held_back_pool_photos_fit_nothing_and_their_flagged_share_is_reported(project):
    manifest, unknowns, pool = project
    settings = UnknownSettings("mahalanobis", 1.0, 1, 0.1, outliers="relative")
    fit, held = pool[:12], pool[12:]

    fitted = fit_bundle_detector(TintBackend(), manifest, CLASSES, settings, unknowns=unknowns, outlier_paths=fit,
                                 held_back_paths=held, batch_size=8)

    assert fitted.outlier_photos == 12 and fitted.held_back == (3, 1.0)  # yellows like the fitted ones: all flagged
    record = fitted.fitted_on("auto")
    assert (record["outlier_photos"], record["held_back_photos"], record["held_back_flagged"]) == (12, 3, 1.0)
    assert "held-back outliers" not in fitted.figures["images"]  # they choose; data/unknown measures
    alone = fit_bundle_detector(TintBackend(), manifest, CLASSES, UnknownSettings("mahalanobis", 1.0, 1, 0.1),
                                unknowns=unknowns, held_back_paths=held, batch_size=8)
    assert alone.held_back is None and alone.fitted_on("auto")["held_back_photos"] == 0  # no pool in the fit


def test_ignored_the_pool_is_never_read_and_without_unknowns_there_are_no_figures(project):
    manifest, _, _ = project
    fitted = fit_bundle_detector(TintBackend(), manifest, CLASSES, UnknownSettings("mahalanobis", 1.0, 1, 0.1),
                                 unknowns=pd.DataFrame(columns=["path", "group"]),
                                 outlier_paths=["no/such/photo.png"], batch_size=8)
    assert fitted.detector.method == "mahalanobis" and fitted.outlier_photos == 0
    assert fitted.figures is None and list(fitted.scores) == ["test fish"]
    assert fitted.line().endswith("no unknown-photo set (data.unknown_source is empty): figures skipped")


def test_relative_refuses_a_missing_or_empty_pool_naming_the_source_and_auto_then_fits_on_fish_alone(tmp_path):
    manifest = tmp_path / "manifest.csv"
    relative, auto = (UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers=use) for use in ("relative", "auto"))
    for content in (None, "path,origin,sha256\n"):  # no manifest, then one listing no photo
        if content is not None:
            manifest.write_text(content)
        with pytest.raises(EmptyOutlierPool, match="data.outlier_source"):
            outlier_pool_for(relative, path=manifest)
        settled, paths, held = outlier_pool_for(auto, 0.2, path=manifest)
        assert (settled.outliers, paths, held) == ("ignore", [], [])
        assert (settled.method, settled.power, settled.val_flag_rate) == ("mahalanobis", 0.5, 0.01)


def test_a_pool_with_photos_fits_relative_and_auto_unless_ignored_or_not_mahalanobis(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,origin,sha256\ndata/outliers/a.png,outlier_source,abc\ndata/outliers/b.png,feedback,d\n")
    pool = ["data/outliers/a.png", "data/outliers/b.png"]
    one = tmp_path / "one.csv"  # fewer photos than a Gaussian takes: auto keeps the detector without them
    one.write_text("path,origin,sha256\ndata/outliers/a.png,outlier_source,abc\n")
    assert outlier_pool_for(UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers="auto"), path=one)[1] == []
    assert outlier_pool_for(UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers="relative"), path=one)[1] == [pool[0]]
    for use, method, expected in [("relative", "mahalanobis", ("relative", pool)),
                                  ("auto", "mahalanobis", ("relative", pool)),
                                  ("ignore", "mahalanobis", ("ignore", [])),
                                  ("auto", "knn", ("ignore", [])), ("auto", "energy", ("ignore", []))]:
        settled, paths, held = outlier_pool_for(UnknownSettings(method, 0.5, 1, 0.01, outliers=use), path=manifest)
        assert (settled.outliers, paths) == expected and held == [], (use, method)
    # With a share to hold back, the pool is split as `hold_back` splits it; two photos are too few to split.
    assert outlier_pool_for(UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers="auto"), 0.9, path=manifest)[1:] \
        == (pool, [])
    many = tmp_path / "many.csv"
    paths = [f"data/outliers/p{i}.png" for i in range(8)]
    many.write_text("path,origin,sha256\n" + "".join(f"{p},outlier_source,x\n" for p in paths))
    settled, fit, held = outlier_pool_for(UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers="auto"), 0.2, path=many)
    assert settled.outliers == "relative" and (fit, held) == hold_back(paths, 0.2) and len(held) == 3


def test_a_small_copy_keeps_the_shape_within_the_side_and_never_enlarges(tmp_path):
    Image.new("RGB", (200, 100), (10, 200, 30)).save(tmp_path / "wide.png")
    small = small_copy(tmp_path / "wide.png", 64)
    assert small.size == (64, 32) and small.mode == "RGB" and small.getpixel((10, 10)) == (10, 200, 30)
    assert small_copy(Image.new("RGB", (40, 20)), 64).size == (40, 20)


class ImageNetBackend(TintBackend):
    """TintBackend with an ImageNet branch: its head puts a photo's saturation (0 for grey) on ImageNet's fish."""

    def outputs(self, batch):
        out = super().outputs(batch)
        pixels = np.asarray(batch, np.float32)
        saturation = np.clip((pixels.max(axis=3) - pixels.min(axis=3)).mean(axis=(1, 2)) / 160, 1e-6, 1 - 1e-6)
        probs = np.zeros((len(batch), 1000))
        probs[:, IMAGENET_FISH_CLASSES[0]], probs[:, 500] = saturation, 1 - saturation
        return {**out, IMAGENET: probs}


def test_with_an_imagenet_weight_every_figure_hears_the_imagenet_head_and_the_record_says_so(project):
    manifest, unknowns, pool = project
    settings = UnknownSettings("mahalanobis", 1.0, 1, 0.1, outliers="relative", imagenet_weight=1.0)

    fitted = fit_bundle_detector(ImageNetBackend(), manifest, CLASSES, settings, unknowns=unknowns,
                                 outlier_paths=pool, catch_all_labels=[CLASSES[0]["label"]], batch_size=8)

    assert fitted.detector.needs_imagenet and fitted.fitted_on("relative")["imagenet_weight"] == 1.0
    assert fitted.details(settings)["imagenet_weight"] == 1.0  # bundle.json records it as summary.json does
    assert fitted.figures["flagged"]["not-fish"] == 1.0 and fitted.figures["flagged"]["test fish"] <= 0.1
    grey = _photos(Path(pool[0]).parent.parent / "grey", [(130, 128, 126)])
    flags, _ = flag_photos(ImageNetBackend(), fitted.detector, grey + list(manifest["path"].iloc[-1:]), batch_size=2)
    assert flags.tolist() == [True, False]
