"""A tiny trained model that follows the project's model contract, for evaluation and serving tests.

Contract: raw RGB in [0, 255] -> BackbonePreprocess -> convolutions -> GlobalAveragePooling2D
named `pool` -> Dense softmax named `head`. Class k is taught as "the image is tinted colour k",
so its predictions are meaningful and tests can tell the classes apart.

The classes are sorted by label, as data/classes.json is, but NOT by display name: a bundle
that re-sorted them by display name would give wrong answers, and the tests would see it.
"""

import functools
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
CLASSES = [
    {"label": "fish sea_food red_tinted", "display": "Trout"},
    {"label": "fish sea_food green_tinted", "display": "Bass"},
    {"label": "fish sea_food blue_tinted", "display": "Mullet"},
]
CLASSES.sort(key=lambda c: c["label"])  # blue, green, red -> Mullet, Bass, Trout
LABELS = [c["label"] for c in CLASSES]
TINTS = {
    "fish sea_food red_tinted": (200, 40, 40),
    "fish sea_food green_tinted": (40, 200, 40),
    "fish sea_food blue_tinted": (40, 40, 200),
}


def tinted_pixels(label: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A noisy image of the class's colour, uint8 (size, size, 3)."""
    noise = rng.normal(0.0, 25.0, (size, size, 3))
    return np.clip(np.array(TINTS[label], dtype=np.float64) + noise, 0, 255).astype(np.uint8)


def tinted_image(label: str, seed: int, size: int = 48) -> Image.Image:
    return Image.fromarray(tinted_pixels(label, np.random.default_rng(seed), size))


def probe_images(count: int = 12) -> list:
    """`count` tinted photos, the classes in turn (photo i shows CLASSES[i % 3]): what an export is checked on."""
    return [tinted_image(LABELS[i % len(LABELS)], seed=100 + i) for i in range(count)]


def write_tinted_images(folder, per_class: int, seed: int = 0, size: int = 48) -> list[tuple[str, int]]:
    """Save `per_class` PNGs per class under folder/<label>/; returns (path, class index) pairs."""
    rng = np.random.default_rng(seed)
    written = []
    for index, entry in enumerate(CLASSES):
        class_dir = Path(folder) / entry["label"]
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = class_dir / f"{i:03d}.png"
            Image.fromarray(tinted_pixels(entry["label"], rng, size)).save(path)
            written.append((str(path), index))
    return written


@functools.cache
def trained_tiny_model():
    """Build and fit the tiny model once per test session (a few seconds on a CPU)."""
    import keras

    from fish_classifier.model.preprocessing import BackbonePreprocess

    keras.utils.set_random_seed(0)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = BackbonePreprocess("unit")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(len(CLASSES)), 40)
    x_train = np.stack([tinted_pixels(CLASSES[k]["label"], rng) for k in y]).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y, epochs=15, batch_size=24, shuffle=True, verbose=0)
    return model


def save_tiny_model(path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trained_tiny_model().save(path)
    return str(path)


def add_detector(folder, model, train_pixels, train_labels, held_out_pixels) -> None:
    """An unknown-photo detector fitted as `select` fits it (on the train pixels' embeddings), with its
    threshold just above every held-out photo's score, added to the bundle in `folder`."""
    from fish_classifier.evaluation.unknown_fit import UnknownSettings, fit_unknown_detector
    from fish_classifier.serving.bundle_writer import add_unknown_detector
    from fish_classifier.serving.inference import EMBEDDING, KerasBackend

    backend = KerasBackend(model)
    embed = lambda pixels: backend.outputs(np.asarray(pixels, dtype=np.float32))[EMBEDDING]  # noqa: E731
    settings = UnknownSettings("mahalanobis", 0.5, 1, 0.0)
    add_unknown_detector(folder, fit_unknown_detector(settings, embed(train_pixels), train_labels, embed(held_out_pixels)))


def make_bundle(folder, *, temperature: float = 1.0, threshold: float = 0.5, model_name: str = "tiny",
                detector: bool = True) -> str:
    """A deploy bundle around the tiny model, written by the real `write_bundle`, with an unknown-photo
    detector (fitted on tinted photos) unless `detector` is False."""
    from fish_classifier.serving.bundle_writer import write_bundle

    folder = Path(folder)
    model_path = save_tiny_model(folder.parent / f"{folder.name}-source" / "model.keras")
    write_bundle(
        folder,
        model_path=model_path,
        classes=CLASSES,
        model_name=model_name,
        temperature=temperature,
        threshold=threshold,
        top_k=5,
        metrics={"accuracy": 1.0, "macro_f1": 1.0},
        data_hash="sha256:test",
    )
    if detector:
        from fish_classifier.images import load_pixels

        # Photos of the sizes the tests use, decoded as the Predictor decodes them.
        y = np.repeat(np.arange(len(CLASSES)), 40)
        train, held_out = ([load_pixels(tinted_image(CLASSES[k]["label"], seed=offset + i, size=(32, 48, 64)[i % 3]),
                                        IMAGE_SIZE) for i, k in enumerate(y)] for offset in (5000, 6000))
        add_detector(folder, trained_tiny_model(), train, y, held_out)
    return str(folder)


class TintBackend:
    """Answers with the image's mean colour as probabilities over (blue, green, red): CLASSES' order. Its
    embedding is that mean colour itself, so the unknown-photo detector can be fitted on it too."""

    input_size = 16

    def __call__(self, batch):
        means = np.asarray(batch, dtype=np.float64).mean(axis=(1, 2))[:, ::-1]  # RGB -> blue, green, red
        return means / means.sum(axis=1, keepdims=True)

    def outputs(self, batch):
        from fish_classifier.serving.inference import EMBEDDING, PROBABILITIES

        return {PROBABILITIES: self(batch), EMBEDDING: np.asarray(batch, dtype=np.float32).mean(axis=(1, 2))}
