"""Small deploy bundles for the app's tests and benchmark, trained in seconds.

`build_colour_bundle`: synthetic photos where each class is one colour, on a
tiny CNN that follows the model contract (raw RGB in, `pool`, `head`).
`build_real_photo_bundle`: a few real species from ../shared/data/fish-dev.zip
on a frozen ImageNet MobileNetV2 (weights from ../shared/keras), for checks that
a real photo gets its real name.
Both carry a row of example photos, one per class, as the `select` stage writes it.
"""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from fish_classifier.serving.bundle_writer import add_examples, write_bundle
from support import REPO_ROOT
from support.fixtures_models import add_detector

SHARED = REPO_ROOT.parent / "shared"
DEV_ZIP = SHARED / "data" / "fish-dev.zip"
UNKNOWN_ZIP = SHARED / "data" / "unknown-dev.zip"
MOBILENET_WEIGHTS = SHARED / "keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

# Deliberately not the dataset's names: the app must show whatever the bundle says.
COLOUR_CLASSES = [
    {"label": "test crimson", "display": "Crimson testfish"},
    {"label": "test emerald", "display": "Emerald testfish"},
    {"label": "test cobalt", "display": "Cobalt testfish"},
]
COLOURS = [(210, 40, 50), (40, 190, 70), (40, 70, 210)]
COLOUR_METRICS = {"accuracy": 0.97, "macro_f1": 0.96, "macro_precision": 0.95, "macro_recall": 0.94}
EXAMPLE_SIZE = 256  # as params.yaml's select.example_size


def colour_photo(class_index: int, size: int = 64, seed: int = 0) -> Image.Image:
    """A noisy square of class `class_index`'s colour with a darker blob, as an 8-bit RGB image."""
    rng = np.random.default_rng(seed)
    pixels = np.array(COLOURS[class_index], dtype=np.float64) + rng.normal(0, 18, (size, size, 3))
    centre = rng.integers(size // 4, 3 * size // 4, 2)
    yy, xx = np.mgrid[:size, :size]
    pixels[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < (size // 6) ** 2] *= 0.6
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def build_colour_bundle(out_dir, *, classes=COLOUR_CLASSES, threshold: float = 0.5, image_size: int = 32) -> Path:
    import keras

    from fish_classifier.model.preprocessing import BackbonePreprocess

    keras.utils.set_random_seed(0)
    n = len(classes)
    x = np.stack([np.asarray(colour_photo(i % n, image_size, seed=i)) for i in range(30 * n)]).astype("float32")
    y = np.arange(30 * n) % n
    pixels = keras.Input((image_size, image_size, 3))
    features = BackbonePreprocess("unit")(pixels)
    features = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(features)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    model = keras.Model(pixels, keras.layers.Dense(n, activation="softmax", name="head")(pooled))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, batch_size=30, verbose=0)
    # Held-out photos of every size the tests upload, decoded as the Predictor decodes them, set the threshold.
    from fish_classifier.images import load_pixels

    held_out = np.stack([load_pixels(jpeg_bytes(colour_photo(i % n, size, seed=1000 + i)), image_size)
                         for i in range(6 * n) for size in (32, 64, 96, 128)])
    _bundle_from_model(model, out_dir, classes, "colour-test-cnn", threshold, COLOUR_METRICS,
                       detector_photos=(x, y, held_out))
    # Like the dataset's photos, examples come in at full size and are shrunk by add_examples.
    add_examples(out_dir, [(entry, colour_photo(k, 2 * EXAMPLE_SIZE, seed=2000 + k)) for k, entry in enumerate(classes)],
                 size=EXAMPLE_SIZE)
    return Path(out_dir)


def real_photos(classes: list[str], split: str, per_class: int) -> list[tuple[str, bytes]]:
    """(label, JPEG bytes) of the first `per_class` photos of each class in `split` of the dev zip."""
    photos = []
    with zipfile.ZipFile(DEV_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        for label in classes:
            folder = f"/data/{split}/{label}/"
            picked = [n for n in names if folder in n][:per_class]
            photos += [(label, archive.read(n)) for n in picked]
    return photos


def dev_photos(split: str, count: int) -> list[tuple[str, bytes]]:
    """(file name, JPEG bytes) of the first `count` photos of `split` in the dev zip, in path order."""
    with zipfile.ZipFile(DEV_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if f"/data/{split}/" in n and n.endswith(".jpg"))[:count]
        return [(Path(n).name, archive.read(n)) for n in names]


def sample_photo() -> tuple[str, bytes]:
    """The first dev test photo, or a synthetic JPEG where the dev zip is absent: a photo for timing."""
    if DEV_ZIP.is_file():
        return dev_photos("test", 1)[0]
    return "synthetic.jpg", jpeg_bytes(colour_photo(0, 256))


def build_real_photo_bundle(out_dir, labels: list[str], *, per_class: int = 30, image_size: int = 128) -> Path:
    """A frozen MobileNetV2 with a head fitted on `per_class` train photos of each of `labels`."""
    import keras

    from fish_classifier.images import load_pixels
    from fish_classifier.model.zoo import build_model

    keras.utils.set_random_seed(0)
    photos = real_photos(labels, "train", per_class)
    x = np.stack([load_pixels(data, image_size) for _, data in photos]).astype("float32")
    y = np.array([labels.index(label) for label, _ in photos])
    model = build_model("mobilenetv2", len(labels), weights=str(MOBILENET_WEIGHTS), image_size=image_size)
    for layer in model.layers:
        layer.trainable = layer.name == "head"
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0, shuffle=True)
    held_out = real_photos(labels, "val", 10)
    val = np.stack([load_pixels(data, image_size) for _, data in held_out])
    probs = model.predict(val, verbose=0)
    accuracy = float(np.mean([labels[k] == label for k, (label, _) in zip(probs.argmax(1), held_out)]))
    classes = [{"label": label, "display": display_name(label)} for label in labels]
    _bundle_from_model(model, out_dir, classes, "mobilenetv2", 0.5, {"accuracy": accuracy}, detector_photos=(x, y, val))
    # The first test photo of each species, as `select` picks them.
    add_examples(out_dir, [(classes[labels.index(label)], data) for label, data in real_photos(labels, "test", 1)],
                 size=EXAMPLE_SIZE)
    return Path(out_dir)


def display_name(label: str) -> str:
    """'fish sea_food red_mullet' -> 'Red mullet' (for the test bundle only)."""
    words = label.replace("fish sea_food ", "").replace("_", " ")
    return words[:1].upper() + words[1:]


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def not_fish_photos(count: int) -> list[tuple[str, bytes]]:
    """(file name, JPEG bytes) of `count` photos that are no fish: the dev unknown set's, else rendered text."""
    if UNKNOWN_ZIP.is_file():
        with zipfile.ZipFile(UNKNOWN_ZIP) as archive:
            names = sorted(n for n in archive.namelist() if "/not-fish/" in n and n.endswith(".jpg"))
            return [(Path(n).name, archive.read(n)) for n in names[:: max(1, len(names) // count)][:count]]
    return [(f"text-{i}.jpg", jpeg_bytes(text_photo(f"not a fish #{i}"))) for i in range(count)]


def text_photo(text: str, size: int = 256) -> Image.Image:
    """Black text on white: as unlike a fish (or a colour test photo) as a photo gets."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for line in range(5):
        draw.text((8, 10 + 48 * line), text, fill=(0, 0, 0), font=ImageFont.load_default(size=26))
    return image


def _bundle_from_model(model, out_dir, classes, model_name, threshold, metrics, detector_photos) -> Path:
    """A bundle written by the real `write_bundle`, with an unknown-photo detector fitted
    as `select` fits it: on the train pixels' embeddings, its threshold above every held-out photo's score."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model_path = out_dir.parent / f"{out_dir.name}-model.keras"
    model.save(model_path)
    write_bundle(
        out_dir,
        model_path=model_path,
        classes=classes,
        model_name=model_name,
        temperature=1.0,
        threshold=threshold,
        top_k=5,
        metrics=metrics,
        data_hash="sha256:test",
    )
    add_detector(out_dir, model, *detector_photos)
    return out_dir
