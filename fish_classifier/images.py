"""Decoding any dataset or user image into RGB pixels, the same way everywhere.

`prepare`, training, evaluation and the `Predictor` all read images through this
module, so a photo is decoded, oriented, converted and resized identically in
every place that looks at it.
"""

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Pillow's names for those formats, and the only ones it may try: a file named .jpg can hold any of its
# forty-odd formats, and their rarely used readers fail on corrupt headers in ways nobody expects.
# MPO is what phone cameras write into their .jpg files.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "MPO")

# Refuse images above this many pixels before decoding them: a decompression
# bomb is a tiny file that expands into gigabytes.
MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Refuse files above this size before reading them: an uncompressed 32-bit BMP at MAX_PIXELS is 200 MB.
MAX_FILE_BYTES = 256 * 2**20

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class ImageError(ValueError):
    """An input that is not a usable image; the message says why."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def open_rgb(source: ImageSource) -> Image.Image:
    """Decode `source` fully into an 8-bit RGB image with EXIF orientation applied.

    Raises ImageError naming the problem for empty, truncated, non-image,
    animated or oversized inputs, and for images in formats other than IMAGE_FORMATS.
    """
    image = _open(source)
    try:
        return _decode(image)
    except ImageError:
        raise
    except Exception as exc:  # Pillow's readers meet corrupt data with any exception (TypeError, struct.error, ...)
        raise ImageError(f"image data is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def load_pixels(source: ImageSource, size: int) -> np.ndarray:
    """The model's input for one image: uint8 array of shape (size, size, 3), RGB in [0, 255]."""
    image = open_rgb(source)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def read_image_file(path: str | os.PathLike) -> bytes:
    """The bytes of the image file at `path`, refused with ImageError if missing, empty, too big or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no such file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ImageError("file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read the file ({exc.strerror or exc})") from exc


def _decode(image: Image.Image) -> Image.Image:
    # Phone cameras save MPO JPEGs whose extra frames are previews or depth maps; the first frame is the photo.
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise ImageError(f"animated image with {image.n_frames} frames; upload a single still photo")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit")
    image.load()
    image = ImageOps.exif_transpose(image)
    return _to_rgb(image)


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("file is empty (0 bytes)")
        stream = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        stream = io.BytesIO(read_image_file(source))
    else:
        stream = source
    try:
        return Image.open(stream, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image is too large to decode safely ({exc})") from exc
    except Exception as exc:  # as in open_rgb: a corrupt header can raise anything
        raise ImageError(f"not a readable image (corrupt, or not one of {', '.join(IMAGE_FORMATS)})") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            scale = 257.0  # 16-bit samples span 0..65535, however dark this image happens to be
        elif image.mode == "I":
            # 32-bit 'I' images come from 16-bit files or from 8-bit data that stays within 0..255.
            scale = 257.0 if pixels.max(initial=0) > 255 else 1.0
        else:
            scale = 1.0
        gray = np.clip(np.rint(pixels / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
