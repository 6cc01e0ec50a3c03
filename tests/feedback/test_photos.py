"""An upload is kept as a metadata-free JPEG turned upright, and one that cannot be kept is refused by name."""

import hashlib
import io

import pytest
from PIL import Image
from support.synthetic_images import image_bytes, noise_image

from fish_classifier.feedback.photos import clean_photo
from fish_classifier.feedback.schema import FeedbackError

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def gps_tagged_jpeg() -> bytes:
    """A 40x20 JPEG with a GPS position (a fishing ground) and orientation 6 (turn 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (59.0, 20.0, 12.5), 3: "E", 4: (18.0, 4.0, 7.25)})
    buffer = io.BytesIO()
    noise_image((40, 20), seed=7).save(buffer, "JPEG", exif=exif, comment=b"caught at the secret bank")
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)[2] == (59.0, 20.0, 12.5)  # really tagged
    return data


def test_a_gps_tagged_jpeg_is_stored_upright_without_exif_or_comments():
    upload = gps_tagged_jpeg()
    clean = clean_photo(upload, max_bytes=10**6)

    assert clean.sha256 == hashlib.sha256(upload).hexdigest()  # of the upload, not of the JPEG kept
    image = Image.open(io.BytesIO(clean.jpeg))
    assert image.format == "JPEG"
    assert image.size == (clean.width, clean.height) == (20, 40)  # orientation 6 applied: turned upright
    assert len(image.getexif()) == 0 and not image.getexif().get_ifd(GPS_IFD)
    assert not {"exif", "comment", "icc_profile", "xmp"} & set(image.info)
    assert b"Exif" not in clean.jpeg and b"secret bank" not in clean.jpeg and b"PhoneMaker" not in clean.jpeg


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the bomb below, refused
def test_photos_that_cannot_be_kept_are_refused():
    bomb = io.BytesIO()
    Image.new("1", (8_000, 8_000)).save(bomb, "PNG")  # 64 megapixels in a file of a few kB
    assert len(bomb.getvalue()) < 10_000
    cases = {
        b"": "the photo is empty",
        b"no image at all": "the photo cannot be kept: ",
        image_bytes(size=(64, 64), format="PNG"): r"the photo is 12,[0-9]{3} bytes, over the store's 10,000-byte limit",
        bomb.getvalue(): "8000x8000 pixels, over the 50,000,000-pixel limit",
    }
    for upload, message in cases.items():
        with pytest.raises(FeedbackError, match=message):
            clean_photo(upload, max_bytes=10_000)
    with pytest.raises(FeedbackError, match="the photo must be the uploaded bytes, got str"):
        clean_photo("photo.jpg", max_bytes=10_000)
