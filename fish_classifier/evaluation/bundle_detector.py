"""The deploy bundle's unknown-photo detector, fitted and measured as serving sees photos: on its LiteRT model's
embeddings. Fitted on the train photos, as they are and brought down to `select.unknown_small_px` (and, with
`select.unknown_outliers: relative`, or auto and a pool that holds photos, the outlier pool of data/outliers), its
threshold set on validation fish; measured on test fish and on data/unknown's groups alone."""

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fish_classifier.data.manifest import label_indices, scored_split
from fish_classifier.data.unknown_set import FISH_ELSEWHERE, GROUPS
from fish_classifier.evaluation.catch_all_fit import doubted_answers
from fish_classifier.evaluation.unknown_fit import EmptyOutlierPool, UnknownSettings, fit_unknown_detector
from fish_classifier.evaluation.unknown_report import SMALL_TEST_FISH, TEST_FISH, unknown_figures
from fish_classifier.images import ImageSource, open_rgb
from fish_classifier.layout import OUTLIERS_MANIFEST
from fish_classifier.serving.inference import EMBEDDING, IMAGENET, PROBABILITIES, outputs_for_files
from fish_classifier.serving.unknown import UnknownDetector


HELD_BACK = "held-back outliers"  # the outlier pool's photos kept out of the fit (`hold_back`)


@dataclass(frozen=True)
class BundleDetector:
    detector: UnknownDetector
    scores: dict[str, np.ndarray]  # test fish and each group of data/unknown: what the figures measure
    figures: dict | None  # `unknown_figures`, None without an unknown-photo set
    outlier_photos: int  # photos of the pool it was fitted on (0 when they are ignored)
    small_px: int | None = None  # the train fish were fitted brought down to this many px as well (None: as they are)
    held_back: tuple[int, float] | None = None  # pool photos kept out of the fit, and the share of them it flags
    # The serving outputs of the val and test fish (`outputs_for_files`), which the catch-all doubt reuses.
    fish_outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def line(self) -> str:
        """The detector's figures in one line, for the stage's log."""
        head = f"unknown photos ({self.detector.method}, threshold {self.detector.threshold:.4g}): "
        if not self.figures:
            return head + "no unknown-photo set (data.unknown_source is empty): figures skipped"
        return head + ", ".join(f"{group} {rate:.1%} flagged" for group, rate in self.figures["flagged"].items()) \
            + f"; AUROC {self.figures['auroc_test_fish_vs_not_fish']:.4f}"

    def details(self, settings: UnknownSettings) -> dict:
        """What bundle.json records of the detector beside its method and threshold: its settings, what it was
        fitted on (as `fitted_on` says it) and its figures."""
        fitted = {key: value for key, value in self.fitted_on(settings.outliers).items()
                  if key not in ("method", "asked")}
        return {"power": settings.power, "k": settings.k, "val_flag_rate": settings.val_flag_rate, **fitted,
                "figures": self.figures}


    def fitted_on(self, asked: str) -> dict:
        """What metrics/summary.json records of how the detector was fitted: its method, whether it scored against
        the outlier pool (`outliers`, relative or ignore) when `asked` (select.unknown_outliers), and on how many
        of the pool's photos."""
        return {"method": self.detector.method, "imagenet_weight": self.detector.imagenet_weight,
                "outliers": "relative" if self.outlier_photos else "ignore",
                "asked": asked, "outlier_photos": self.outlier_photos, "small_px": self.small_px,
                "held_back_photos": self.held_back[0] if self.held_back else 0,
                "held_back_flagged": self.held_back[1] if self.held_back else None}


def outlier_pool_for(settings: UnknownSettings, held_back: float = 0.0,
                     path=OUTLIERS_MANIFEST) -> tuple[UnknownSettings, list[str], list[str]]:
    """`settings` with `outliers` settled (auto: relative when the pool's manifest lists at least two photos, the
    fewest a Gaussian takes, and the method is mahalanobis; else ignore), the pool's photos that fit the detector,
    and those `hold_back` keeps out of the fit by the share `held_back` (paths; none when the pool is ignored).
    EmptyOutlierPool when relative is asked for and the pool holds no photo."""
    if settings.outliers == "ignore" or (settings.outliers == "auto" and settings.method != "mahalanobis"):
        return replace(settings, outliers="ignore"), [], []
    pool = pd.read_csv(path, dtype=str, keep_default_na=False) if Path(path).is_file() else pd.DataFrame()
    if pool.empty and settings.outliers == "relative":
        raise EmptyOutlierPool()
    if len(pool) < 2 and settings.outliers == "auto":
        return replace(settings, outliers="ignore"), [], []
    return replace(settings, outliers="relative"), *hold_back(pool["path"].tolist(), held_back)


def hold_back(paths, share: float) -> tuple[list[str], list[str]]:
    """The outlier pool split into the photos that fit the detector and about `share` of them kept back, to choose
    methods and settings by (with validation fish). A photo's side follows from its path alone, so it stays put as
    the pool grows. Nothing is kept back when the rest would hold fewer than two photos, the fewest a Gaussian
    takes."""
    paths = list(paths)
    held = [path for path in paths
            if int.from_bytes(hashlib.sha256(str(path).encode("utf-8")).digest()[:8], "big") < share * 2 ** 64]
    if len(paths) - len(held) < 2:
        return paths, []
    held_set = set(held)
    return [path for path in paths if path not in held_set], held


def fit_bundle_detector(backend, manifest: pd.DataFrame, classes: list[dict], settings: UnknownSettings, *,
                        unknowns: pd.DataFrame, outlier_paths=(), held_back_paths=(), head=None, catch_all_labels=(),
                        small_px=None, batch_size: int) -> BundleDetector:
    """Fit the detector on `backend`'s embeddings and measure it. `unknowns`: data/unknown's manifest (path, group),
    the only photos the figures count besides test fish; `outlier_paths`: the pool's photos, which only fit it;
    `held_back_paths`: pool photos kept out of the fit (`hold_back`), of which it reports the share flagged.
    `small_px`: the train fish fit it brought down to that many px as well (`train_embeddings`), and the test fish
    are measured at that size too."""
    def outputs(paths, desc):
        return outputs_for_files(backend, paths, batch_size=batch_size, desc=desc)

    fish = {split: scored_split(manifest, split) for split in ("val", "test")}
    embedded = {split: outputs(rows["path"], f"detector {split}") for split, rows in fish.items()}
    train, labels = train_embeddings(backend, scored_split(manifest, "train"), classes, small_px, batch_size=batch_size)
    pool = outputs(list(outlier_paths), "outlier pool")[EMBEDDING] if settings.outliers == "relative" else None
    detector = fit_unknown_detector(settings, train, labels, embedded["val"][EMBEDDING], head, outlier_embeddings=pool,
                                    val_imagenet=embedded["val"].get(IMAGENET))
    scores, pooled = {TEST_FISH: detector.score_outputs(embedded["test"])}, 0 if pool is None else len(pool)
    held = None
    if pool is not None and len(held_back_paths):
        held_scores = detector.score_outputs(outputs(list(held_back_paths), HELD_BACK))
        held = (len(held_scores), float(detector.is_unknown(held_scores).mean()))
    if not len(unknowns):
        return BundleDetector(detector, scores, None, pooled, small_px, held, embedded)
    groups = {group: outputs(rows["path"], group) for group, rows in unknowns.groupby("group") if group in GROUPS}
    scores |= {group: detector.score_outputs(out) for group, out in groups.items()}
    if small_px:
        small = [small_copy(path, small_px) for path in fish["test"]["path"]]
        scores[SMALL_TEST_FISH] = detector.score_outputs(outputs(small, SMALL_TEST_FISH))
    elsewhere = groups.get(FISH_ELSEWHERE)
    figures = unknown_figures(detector, settings.val_flag_rate, scores, catch_all_labels=catch_all_labels,
                              fish_elsewhere_labels=None if elsewhere is None else
                              [classes[k]["label"] for k in elsewhere[PROBABILITIES].argmax(axis=1)])
    return BundleDetector(detector, scores, {**figures, "outlier_photos": pooled}, pooled, small_px, held, embedded)


def train_embeddings(backend, train: pd.DataFrame, classes: list[dict], small_px: int | None, *,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings and class indices the detector is fitted on: each train photo as it is and, given `small_px`,
    brought down to that many px as well (`small_copy`), as the outlier pool's photos and small phone photos are.
    A detector fitted on sharp fish alone learns that small means no fish."""
    labels = label_indices(train["label"], classes)
    embeddings = outputs_for_files(backend, train["path"], batch_size=batch_size, desc="detector train")[EMBEDDING]
    if not small_px:
        return embeddings, labels
    small = [small_copy(path, small_px) for path in train["path"]]
    small = outputs_for_files(backend, small, batch_size=batch_size, desc=f"detector train at {small_px} px")
    return np.concatenate([embeddings, small[EMBEDDING]]), np.concatenate([labels, labels])


def small_copy(source: ImageSource, side: int) -> Image.Image:
    """The photo brought down to at most `side` px on its longest side, as a small phone photo or a 64 px corpus
    photo is (a model scales it back up to its input size)."""
    image = open_rgb(source)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def flag_photos(backend, detector: UnknownDetector, paths, *, batch_size: int, doubt=None,
                classes=()) -> tuple[np.ndarray, np.ndarray | None]:
    """(the detector's verdict, True: unknown; the catch-all doubt's, True: doubted, None without `doubt`) on
    each photo of `paths`, from one run of the model over them. `classes`: the bundle's, which `doubt` needs."""
    outputs = outputs_for_files(backend, list(paths), batch_size=batch_size, desc="field")
    return detector.is_unknown(detector.score_outputs(outputs)), doubted_answers(doubt, classes, outputs)


def head_weights(model_path) -> list[np.ndarray]:
    """The Keras model's head (kernel, bias), which the energy score needs."""
    from fish_classifier.model.preprocessing import load_model

    return load_model(model_path).get_layer("head").get_weights()
