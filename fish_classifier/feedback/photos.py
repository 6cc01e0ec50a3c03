"""An upload made fit to keep: read as the app reads it, turned upright, and re-encoded as a JPEG that carries
none of the upload's metadata (EXIF GPS positions of fishing grounds are sensitive)."""

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fish_classifier.feedback.schema import FeedbackError
from fish_classifier.images import ImageError, open_rgb

JPEG_QUALITY = 95


@dataclass(frozen=True)
class CleanPhoto:
    sha256: str  # of the bytes the user uploaded, not of the JPEG
    jpeg: bytes  # metadata-free, upright
    width: int
    height: int


def clean_photo(photo: bytes, *, max_bytes: int) -> CleanPhoto:
    """The upload `photo` (at most `max_bytes`) as a metadata-free JPEG turned upright; FeedbackError if it is
    no photo the store can keep."""
    if not isinstance(photo, (bytes, bytearray, memoryview)):
        raise FeedbackError(f"the photo must be the uploaded bytes, got {type(photo).__name__}")
    photo = bytes(photo)
    if not photo:
        raise FeedbackError("the photo is empty (0 bytes)")
    if len(photo) > max_bytes:
        raise FeedbackError(f"the photo is {len(photo):,} bytes, over the store's {max_bytes:,}-byte limit")
    try:
        image = open_rgb(photo)  # EXIF orientation applied; bombs, animations and odd formats refused
    except (ImageError, OSError) as exc:
        raise FeedbackError(f"the photo cannot be kept: {exc}") from exc
    # A new image from the bare pixels carries none of the upload's metadata (EXIF, GPS, XMP, ICC, comments).
    clean = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    clean.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return CleanPhoto(hashlib.sha256(photo).hexdigest(), buffer.getvalue(), *clean.size)
