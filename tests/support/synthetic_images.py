"""Tiny synthetic images, image trees and dataset zips for the tests, made on the fly.

Every image is seeded noise, so two different seeds never look alike (their
perceptual hashes are about 32 bits apart) and the same seed gives the same bytes.
"""

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# Real folder names of the fish dataset, spaces included, and its rare class.
CLASSES = ("animal fish", "animal fish bass", "fish sea_food red_mullet")
COUNTS = {"train": 3, "val": 1, "test": 1}
ZIP_PREFIX = "Dataset/images.cv_synthetic/data"
EXIF_ORIENTATION = 0x0112


def noise_image(size=(32, 32), seed=0) -> Image.Image:
    """An RGB image of seeded noise; size is (width, height)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def image_bytes(mode="RGB", *, size=(32, 32), seed=0, format=None, orientation=None) -> bytes:
    """A file's bytes holding a noise image in `mode` (RGB, L, P, RGBA, CMYK or I;16).

    The format defaults to JPEG where it can hold the mode, else PNG. `orientation`
    writes that EXIF orientation tag (6: the viewer must turn it 90 degrees clockwise).
    """
    rgb = noise_image(size, seed)
    if mode == "I;16":
        # Span the full 16-bit range so a wrong 8-bit reading would show.
        image = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    elif mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(rgb.size))
    else:
        image = rgb.convert(mode)
    format = format or ("JPEG" if mode in ("RGB", "L", "CMYK") else "PNG")
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def truncated_jpeg_bytes(size=(64, 64), seed=0) -> bytes:
    """A JPEG cut off halfway: the header reads, the pixels do not."""
    data = image_bytes(size=size, seed=seed)
    return data[: len(data) // 2]


def tiff_without_dimensions() -> bytes:
    """A two-frame TIFF whose second frame has no width or height: Pillow opens it, then raises
    TypeError('Missing dimensions') when asked how many frames it has. (Issue 18's photo.jpg.)"""

    def directory(entries, next_offset):
        packed = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries)
        return struct.pack("<H", len(entries)) + packed + struct.pack("<I", next_offset)

    # A 1x1 8-bit grey frame (width, length, bits, compression, photometric, strip offset, samples,
    # rows per strip, strip bytes), then a frame with only bits, compression and photometric.
    first = [(256, 4, 1), (257, 4, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0), (277, 3, 1),
             (278, 4, 1), (279, 4, 1)]  # fmt: skip
    second_offset = 8 + len(directory(first, 0))
    second = [(258, 3, 8), (259, 3, 1), (262, 3, 1)]
    return b"II*\x00" + struct.pack("<I", 8) + directory(first, second_offset) + directory(second, 0)


def flat_16_bit_png(width: int, height: int) -> bytes:
    """A 16-bit grey PNG, flat but for a band of rows holding a 0..65535 ramp: tiny as a file, huge decoded
    (issue 18's 93 KB photo is 7000x7000). Written row by row, so making it costs no more than a row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    flat = b"\x00" + struct.pack(">H", 257 * 100) * width  # each row: filter type 0, then big-endian samples
    ramp = b"\x00" + np.linspace(0, 65535, width).astype(">u2").tobytes()
    compressor = zlib.compressobj(9)
    rows = [compressor.compress(ramp if height // 2 <= y < height // 2 + height // 50 else flat) for y in range(height)]
    pixels = b"".join(rows) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit grey, not interlaced
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def byte_flips(data: bytes, count: int, seed: int) -> list[bytes]:
    """`count` corrupted copies of `data`, each with 1 to 8 bytes at seeded random places set to random values."""
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(count):
        mutated = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 9)):
            mutated[position] = rng.integers(0, 256)
        copies.append(bytes(mutated))
    return copies


def fuzz_originals() -> dict[str, bytes]:
    """Small, header-heavy files to corrupt: a JPEG with EXIF, a PNG, a TIFF and a WebP with alpha."""
    return {
        "jpg": image_bytes(size=(16, 16), seed=1, orientation=6),
        "png": image_bytes("RGBA", size=(16, 16), seed=2),
        "tif": image_bytes("RGBA", size=(16, 16), seed=3, format="TIFF"),
        "webp": image_bytes("RGBA", size=(16, 16), seed=4, format="WEBP"),
    }


def write_image(path, mode="RGB", **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(mode, **kwargs))
    return path


def seed_for(name: str) -> int:
    """A stable seed per file name, so every synthetic image differs from every other."""
    return zlib.crc32(name.encode("utf-8"))


def dataset_files(classes=CLASSES, counts=None, size=(32, 32)) -> dict[str, bytes]:
    """{"<split>/<label>/<i>.jpg": JPEG bytes} for a dataset with `counts[split]` images per class.

    `counts` maps split -> images per class, or split -> {label: images} for uneven classes.
    """
    counts = COUNTS if counts is None else counts
    files = {}
    for split, per_class in counts.items():
        for label in classes:
            n = per_class.get(label, 0) if isinstance(per_class, dict) else per_class
            for i in range(n):
                name = f"{split}/{label}/{i:03d}.jpg"
                files[name] = image_bytes(size=size, seed=seed_for(name))
    return files


def write_image_tree(root, classes=CLASSES, counts=None, size=(32, 32), extra=None) -> Path:
    """Write root/<split>/<label>/<i>.jpg, plus `extra` {relative path: bytes}. Returns root."""
    root = Path(root)
    for name, data in {**dataset_files(classes, counts, size), **(extra or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_dataset_zip(zip_path, classes=CLASSES, counts=None, size=(32, 32), prefix=ZIP_PREFIX, extra=None) -> Path:
    """A zip laid out like the real Dataset.zip: <prefix>/<split>/<label>/<i>.jpg.

    `extra` adds {path below prefix: bytes}; an empty `prefix` puts the splits at the top.
    """
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, data in {**dataset_files(classes, counts, size), **(extra or {})}.items():
            archive.writestr(f"{prefix}/{name}" if prefix else name, data)
    return zip_path


def known_image(size: int) -> np.ndarray:
    """A deterministic image whose three channels differ, so an RGB/BGR swap shows."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    red = np.tile(ramp, (size, 1))
    green = red.T
    blue = np.full((size, size), 37.0, dtype=np.float32)
    return np.stack([red, green, blue], axis=-1)[None]
