"""Doubt on the catch-all answer: when the model says "any other fish", can it rule out a named species?

Every market species in the dataset was photographed on one studio tray, and only the catch-all class (`animal
fish`, `data.other_fish_labels`) holds fish photographed anywhere else. So on a photo from outside the studio the
model answers the catch-all, and its calibrated confidence (fitted on studio photos, where that is never wrong) is
near 100% even when the photo shows a trout in an angler's hands or shrimp on a plate (docs/field.md).

A second opinion that has seen fish everywhere is at hand in a bundle with an ImageNet branch: ImageNet's head.
Where it puts real weight on fish that are none of the named species (goldfish, sharks, rays, eels, reef fish,
sturgeon, gar), the catch-all answer stands. Where it does not, the answer is flagged low-confidence: the photo may
be a named species photographed outside the studio. The threshold flags at most `rate` of the validation photos that
the model answers with a catch-all class (`select.catch_all_doubt_rate`): what the rule costs is set on validation.
(The rate and the class list were chosen with the field photos in view: docs/field.md says so beside its figures.)
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

# ImageNet-1k's fish and crustaceans, by class index: the one list that the ImageNet branch's fish mass
# (model/imagenet_branch.py) and this rule both read. Crustaceans count as fish: a shrimp on a plate gets most of
# its mass from crayfish and the lobsters.
IMAGENET_FISH = {
    0: "tench", 1: "goldfish", 2: "great white shark", 3: "tiger shark", 4: "hammerhead", 5: "electric ray",
    6: "stingray", 118: "Dungeness crab", 119: "rock crab", 120: "fiddler crab", 121: "king crab",
    122: "American lobster", 123: "spiny lobster", 124: "crayfish", 125: "hermit crab", 126: "isopod",
    389: "barracouta", 390: "eel", 391: "coho", 392: "rock beauty", 393: "anemone fish", 394: "sturgeon", 395: "gar",
    396: "lionfish", 397: "puffer",
}
IMAGENET_FISH_CLASSES = tuple(sorted(IMAGENET_FISH))
# Those a named species photographed outside the studio gets its mass from: a bass, a sea bass or a trout in a hand
# (tench, barracouta, coho), a shrimp (the crustaceans).
IMAGENET_SPECIES_LOOKALIKES = ("tench", "barracouta", "coho", "Dungeness crab", "rock crab", "fiddler crab",
                               "king crab", "American lobster", "spiny lobster", "crayfish", "hermit crab", "isopod")
# The rest are fish that are none of the dataset's species nor look like one: goldfish, sharks, rays, eel, rock
# beauty, anemone fish, sturgeon, gar, lionfish, puffer. Their mass backs a catch-all answer.
IMAGENET_OTHER_FISH_CLASSES = tuple(c for c in IMAGENET_FISH_CLASSES
                                    if IMAGENET_FISH[c] not in IMAGENET_SPECIES_LOOKALIKES)
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class CatchAllDoubt:
    """The rule: a photo whose top class is one of `labels` and whose ImageNet probability on `imagenet_classes`
    is below `threshold` is doubted (flagged low-confidence). `rate`: the share of validation catch-all answers
    it was set to flag."""

    labels: tuple[str, ...]
    imagenet_classes: tuple[int, ...]
    threshold: float
    rate: float

    def __post_init__(self):
        if not self.labels or not all(isinstance(label, str) and label for label in self.labels):
            raise ValueError(f"the catch-all doubt needs one or more class labels, got {self.labels!r}")
        if not self.imagenet_classes or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < IMAGENET_CLASSES
                for c in self.imagenet_classes):
            raise ValueError(f"the catch-all doubt's ImageNet classes must be whole numbers from 0 to "
                             f"{IMAGENET_CLASSES - 1}, got {self.imagenet_classes!r}")
        for name in ("threshold", "rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"the catch-all doubt's {name} must be a number from 0 to 1, got {value!r}")

    def doubts(self, top_labels, imagenet) -> np.ndarray:
        """One boolean per photo: its top class (`top_labels`) is a catch-all and ImageNet's head (`imagenet`,
        (n, 1000) probabilities) sees too little of the fish that are no named species to back it."""
        top_labels = np.asarray(top_labels, dtype=object)
        mass = other_fish_mass(imagenet, self.imagenet_classes)
        if len(mass) != len(top_labels):
            raise ValueError(f"{len(top_labels)} answers but ImageNet probabilities for {len(mass)} photos")
        # Not `mass < threshold`: a NaN mass (a broken branch) must not back the answer.
        return np.isin(top_labels, list(self.labels)) & ~(mass >= self.threshold)

    def to_json(self) -> dict:
        return {**asdict(self), "labels": list(self.labels), "imagenet_classes": list(self.imagenet_classes)}

    @classmethod
    def from_json(cls, data) -> "CatchAllDoubt":
        """The rule from bundle.json's `catch_all_doubt`; ValueError naming what is wrong."""
        if not isinstance(data, dict) or set(data) != {"labels", "imagenet_classes", "threshold", "rate"}:
            raise ValueError(f"catch_all_doubt must be an object with labels, imagenet_classes, threshold and rate, "
                             f"got {data!r:.200}")
        if not isinstance(data["labels"], list) or not isinstance(data["imagenet_classes"], list):
            raise ValueError("catch_all_doubt's labels and imagenet_classes must be lists")
        return cls(tuple(data["labels"]), tuple(data["imagenet_classes"]), data["threshold"], data["rate"])


def other_fish_mass(imagenet, classes=IMAGENET_OTHER_FISH_CLASSES) -> np.ndarray:
    """ImageNet's probability on `classes` for each photo of `imagenet`, (n, 1000) probabilities."""
    imagenet = np.atleast_2d(np.asarray(imagenet, dtype=np.float64))
    if imagenet.shape[1] != IMAGENET_CLASSES:
        raise ValueError(f"expected ImageNet probabilities of {IMAGENET_CLASSES} classes, got shape {imagenet.shape}")
    return imagenet[:, list(classes)].sum(axis=1)


def fit_catch_all_doubt(val_top_labels, val_imagenet, labels, rate: float) -> CatchAllDoubt:
    """The rule whose threshold flags at most `rate` of the validation photos answered with one of `labels` (their
    lower `rate`-quantile of ImageNet's mass on other fish); threshold 0, flagging none, when none is so answered."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1 or math.isnan(rate):
        raise ValueError(f"select.catch_all_doubt_rate must be a share from 0 to 1, got {rate!r}")
    answered = np.isin(np.asarray(val_top_labels, dtype=object), list(labels))
    mass = other_fish_mass(val_imagenet)[answered]
    threshold = float(np.quantile(mass, rate, method="lower")) if len(mass) and rate > 0 else 0.0
    return CatchAllDoubt(tuple(labels), IMAGENET_OTHER_FISH_CLASSES, min(threshold, 1.0), float(rate))
