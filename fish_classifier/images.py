"""Decoding any dataset or user image into RGB pixels, the same way everywhere.

`prepare`, training, evaluation and the `Predictor` all read images through this
module, so a photo is decoded, oriented, converted and resized identically in
every place that looks at it.

What a photo costs in memory is bounded by its pixels, not its bit depth: the
decoded samples count against MAX_IMAGE_BYTES before decoding, 16-bit and float
images become 8-bit a band of rows at a time, and a caller that will shrink the
photo to a known size gets it decoded near that size (see `open_rgb`).
"""

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import ExifTags, Image, ImageMode, ImageOps

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
# Refuse images whose decoded samples would take more than this, before decoding them: an 8-bit RGB
# photo at MAX_PIXELS fits (3 bytes a pixel); a 16-bit grey pixel costs 2 bytes, a float or RGBA one 4.
MAX_IMAGE_BYTES = 3 * MAX_PIXELS
# A photo at least this many times the caller's size on both sides is shrunk while decoding, to no less
# than twice that size, so the model's own resize still averages 2x2 pixels or more into each of its own.
# Shrinking changes pixels slightly, so only photos far larger than needed are: the dataset's 256 px
# photos, read by 96 to 224 px models, decode bit for bit as they always did (tests/test_images.py).
SHRINK_FROM = 4
# A photo smaller than this on a side, or flatter than this, shows no fish, so the Predictor flags it as
# unknown whatever the model says: a 1x1 green PNG came back "Animal fish" at 0.9999 (`no_content`).
MIN_SIDE = 16  # px
MIN_SPREAD = 2.0  # standard deviation of the brightness (0-255): JPEG noise on one flat colour stays under 1
# Rows of a 16-bit or float image converted to 8-bit at once: about 2**20 pixels, a few MB of temporaries.
BAND_PIXELS = 2**20

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

# A 16-bit sample v as 8-bit: round(v / 257), in integers (v / 257 is never halfway, 257 being odd).
_SIXTEEN_TO_EIGHT = ((np.arange(65536) + 128) // 257).astype(np.uint8)


class ImageError(ValueError):
    """An input that is not a usable image; the message says why."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def open_rgb(source: ImageSource, target_size: int | None = None) -> Image.Image:
    """Decode `source` into an 8-bit RGB image with EXIF orientation applied.

    `target_size`: the side the caller will resize the image to (a model's input size). A photo at
    least SHRINK_FROM times that on both sides is then decoded smaller, but no smaller than twice it:
    a JPEG by DCT scaling as it decodes (`Image.draft`), any other by averaging blocks of pixels
    (`Image.reduce`). Without it, or for smaller photos, the image is decoded at full size.

    Raises ImageError naming the problem for empty, truncated, non-image, animated, oversized
    or too costly inputs, and for images in formats other than IMAGE_FORMATS.
    """
    if isinstance(source, Image.Image):
        return _decode_or_explain(source, target_size)
    stream = _stream(source)
    try:
        return _decode_or_explain(_open(stream), target_size)
    finally:
        if stream is not source:
            # Pillow keeps a decoded MPO (a phone's JPEG) open for its other frames; closing the stream made
            # here lets go of the file's bytes, which a kept image (a cached thumbnail) would otherwise hold.
            stream.close()


def load_pixels(source: ImageSource, size: int) -> np.ndarray:
    """The model's input for one image: uint8 array of shape (size, size, 3), RGB in [0, 255].

    Equal to resizing `open_rgb(source, size)`, so a caller may decode once and pass that image here.
    """
    image = open_rgb(source, size)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def no_content(size: tuple[int, int], pixels: np.ndarray) -> str | None:
    """Why a photo of `size` (width, height) whose model input is `pixels` can hold no fish, or None: too
    small a side (MIN_SIDE), or one flat colour (brightness spread under MIN_SPREAD)."""
    width, height = size
    if min(width, height) < MIN_SIDE:
        return f"the photo is {width}x{height} pixels, under {MIN_SIDE} on a side: too small to show a fish"
    brightness = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    spread = float(brightness.std())
    if spread < MIN_SPREAD:
        return f"the photo is one flat colour (brightness spread {spread:.1f} of 255): nothing in it to see"
    return None


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


def _decode_or_explain(image: Image.Image, target_size: int | None) -> Image.Image:
    try:
        return _decode(image, target_size)
    except ImageError:
        raise
    except Exception as exc:  # Pillow's readers meet corrupt data with any exception (TypeError, struct.error, ...)
        raise ImageError(f"image data is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def _decode(image: Image.Image, target_size: int | None) -> Image.Image:
    # Phone cameras save MPO JPEGs whose extra frames are previews or depth maps; the first frame is the photo.
    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
        raise ImageError(f"animated image with {image.n_frames} frames; upload a single still photo")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit")
    if target_size is not None and _shrink_factor(image.size, target_size) > 1:
        image.draft(image.mode, (2 * target_size, 2 * target_size))  # a no-op but for a JPEG not yet decoded
    _check_cost(image)
    image.load()
    # exif_transpose copies even an image it leaves as it is: only call it on one it turns.
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    image = _to_8_bit(image)
    if target_size is not None:
        image = _shrunk(image, target_size)
    return _to_rgb(image)


def _check_cost(image: Image.Image) -> None:
    """Refuse an image whose decoded samples would exceed MAX_IMAGE_BYTES, naming its size and that limit."""
    mode = ImageMode.getmode(image.mode)
    per_pixel = len(mode.bands) * np.dtype(mode.typestr).itemsize
    width, height = image.size
    cost = width * height * per_pixel
    if cost > MAX_IMAGE_BYTES:
        raise ImageError(
            f"image is {width}x{height} pixels at {per_pixel} bytes each ({cost:,} bytes decoded), "
            f"over the {MAX_IMAGE_BYTES:,}-byte limit"
        )


def _shrink_factor(size: tuple[int, int], target_size: int) -> int:
    """By how much an image of `size` may shrink and stay at least twice `target_size` on both sides;
    1 unless it is at least SHRINK_FROM times `target_size` on both."""
    factor = min(size) // (2 * target_size)
    return factor if min(size) >= SHRINK_FROM * target_size else 1


def _shrunk(image: Image.Image, target_size: int) -> Image.Image:
    factor = _shrink_factor(image.size, target_size)
    # Pillow cannot average palette or 1-bit pixels; those go through `_to_rgb` at full size.
    if factor == 1 or image.mode in ("P", "1"):
        return image
    return image.reduce(factor)


def _stream(source: ImageSource) -> BinaryIO:
    """A readable stream of `source`: the caller's own file-like, else the bytes of `source` in memory."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("file is empty (0 bytes)")
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        return io.BytesIO(read_image_file(source))
    return source


def _open(stream: BinaryIO) -> Image.Image:
    try:
        return Image.open(stream, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow refuses at twice its limit and quotes that figure; name the project's limit and this image's size.
        size = _declared_size(stream)
        image = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
        raise ImageError(f"image is {image}, over the {MAX_PIXELS:,}-pixel limit") from exc
    except Exception as exc:  # as in open_rgb: a corrupt header can raise anything
        raise ImageError(f"not a readable image (corrupt, or not one of {', '.join(IMAGE_FORMATS)})") from exc


def _declared_size(stream: BinaryIO) -> tuple[int, int] | None:
    """The width and height the header of `stream` declares, read as `Image.open` reads it (each of
    IMAGE_FORMATS' readers whose prefix test passes) but without its bomb check; None if none reads it."""
    try:
        stream.seek(0)
        prefix = stream.read(16)
        for name in IMAGE_FORMATS:
            factory, accept = Image.OPEN[name]
            if accept is None or accept(prefix):
                stream.seek(0)
                try:
                    with factory(stream, None) as header:  # reads the header only, never the pixels
                        return header.size
                except Exception:
                    continue
    except Exception:
        return None
    return None


def _to_8_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as 8-bit grey ("L"); any other image as it is.

    Converted a band of rows at a time, in the samples' own type: a float64 copy of a whole
    7000x7000 16-bit image, as this once made, cost more than 1 GB.
    """
    if image.mode == "F":
        convert = _rounded_to_8_bit
    # 16-bit samples span 0..65535, however dark this image happens to be. 32-bit 'I' images come
    # from 16-bit files or from 8-bit data that stays within 0..255.
    elif image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
        convert = _sixteen_to_8_bit
    elif image.mode == "I":
        convert = _clipped_to_8_bit
    else:
        return image
    width, height = image.size
    gray = np.empty((height, width), dtype=np.uint8)
    step = max(1, BAND_PIXELS // width)
    for top in range(0, height, step):
        bottom = min(height, top + step)
        gray[top:bottom] = convert(np.asarray(image.crop((0, top, width, bottom))))
    return Image.fromarray(gray)


def _rounded_to_8_bit(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples), 0, 255).astype(np.uint8)


def _sixteen_to_8_bit(samples: np.ndarray) -> np.ndarray:
    return _SIXTEEN_TO_EIGHT[np.clip(samples, 0, 65535)]


def _clipped_to_8_bit(samples: np.ndarray) -> np.ndarray:
    return np.clip(samples, 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
