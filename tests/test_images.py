import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fish_classifier import images
from fish_classifier.images import IMAGE_EXTENSIONS, IMAGE_FORMATS, ImageError, is_image_file, load_pixels, open_rgb
from synthetic_images import (
    byte_flips,
    fuzz_originals,
    image_bytes,
    noise_image,
    tiff_without_dimensions,
    truncated_jpeg_bytes,
)

NOT_ACCEPTED = "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_rgb_jpeg_comes_back_unchanged_in_size_and_mode():
    image = open_rgb(image_bytes(size=(40, 30)))
    assert (image.mode, image.size) == ("RGB", (40, 30))


def test_grayscale_becomes_rgb_with_equal_channels():
    pixels = np.asarray(open_rgb(image_bytes("L")))
    assert pixels.shape == (32, 32, 3)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


def test_palette_image_keeps_its_colours():
    original = noise_image(seed=3).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pixels = np.asarray(open_rgb(_png(original)))
    assert (pixels == np.asarray(original.convert("RGB"))).all()


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (200, 10, 10, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    image = open_rgb(_png(rgba))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((3, 3)) == (200, 10, 10)


def test_cmyk_jpeg_is_converted_to_rgb_colours():
    cyan = Image.new("RGB", (16, 16), (0, 255, 255)).convert("CMYK")
    buffer = io.BytesIO()
    cyan.save(buffer, format="JPEG", quality=95)
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "CMYK"
    red, green, blue = open_rgb(buffer.getvalue()).getpixel((8, 8))
    assert red < 20 and green > 235 and blue > 235


@pytest.mark.parametrize(("value16", "value8"), [(0, 0), (257 * 128, 128), (65535, 255), (200, 1)])
def test_16_bit_png_is_scaled_to_8_bit(value16, value8):
    # (200 of 65535 is nearly black: a dark 16-bit image must not be read as 8-bit data.)
    gray16 = Image.fromarray(np.full((4, 4), value16, dtype=np.uint16))
    data = _png(gray16)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert open_rgb(data).getpixel((1, 1)) == (value8, value8, value8)


def test_exif_orientation_is_applied():
    # Left half red, right half blue, tagged "turn 90 degrees clockwise to view".
    left_red = Image.new("RGB", (40, 20), (255, 0, 0))
    left_red.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    left_red.save(buffer, format="JPEG", exif=exif, quality=95)
    image = open_rgb(buffer.getvalue())
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_mpo_photo_from_a_phone_reads_its_first_frame():
    buffer = io.BytesIO()
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    red.save(buffer, format="MPO", save_all=True, append_images=[blue])
    assert open_rgb(buffer.getvalue()).getpixel((4, 4))[0] > 200


@pytest.mark.parametrize("source", [b"", "file"])
def test_empty_input_is_refused(source, tmp_path):
    if source == "file":
        source = tmp_path / "empty.jpg"
        source.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        open_rgb(source)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(ImageError, match="not a readable image"):
        open_rgb(path)


def test_truncated_jpeg_is_refused():
    with pytest.raises(ImageError, match="corrupt or truncated"):
        open_rgb(truncated_jpeg_bytes())


def test_animated_webp_is_refused():
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="animated image with 2 frames"):
        open_rgb(buffer.getvalue())


def test_the_accepted_formats_are_pillows_names_for_the_image_extensions():
    by_extension = Image.registered_extensions()
    assert {by_extension[extension] for extension in IMAGE_EXTENSIONS} | {"MPO"} == set(IMAGE_FORMATS)


def test_issue_18s_tiff_named_photo_jpg_is_refused_by_its_format(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(tiff_without_dimensions())
    with pytest.raises(ImageError) as caught:
        load_pixels(photo, 16)
    assert str(caught.value) == NOT_ACCEPTED


@pytest.mark.parametrize("format_", ["TIFF", "QOI", "GIF", "PCX"])
def test_valid_images_of_other_formats_are_refused_whatever_their_name(format_):
    buffer = io.BytesIO()
    noise_image().save(buffer, format=format_)
    with pytest.raises(ImageError) as caught:
        open_rgb(buffer.getvalue())
    assert str(caught.value) == NOT_ACCEPTED


def test_any_exception_while_decoding_becomes_an_image_error(monkeypatch):
    def broken_exif(image):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(images.ImageOps, "exif_transpose", broken_exif)
    with pytest.raises(ImageError, match=r"^image data is corrupt or truncated \(error: unpack requires a buffer"):
        open_rgb(image_bytes())


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")  # Pillow's notes on the corrupt EXIF it was fed
def test_corrupted_files_raise_nothing_but_image_errors(monkeypatch):
    # Byte flips in a header can claim a huge image: keep decodes small so this takes a second.
    monkeypatch.setattr(images, "MAX_PIXELS", 256 * 256)
    outcomes = {"decoded": 0, "refused": 0}
    for extension, original in fuzz_originals().items():
        for corrupted in byte_flips(original, 300, seed=len(extension)):
            try:
                assert load_pixels(corrupted, 8).shape == (8, 8, 3)
                outcomes["decoded"] += 1
            except ImageError as exc:
                assert str(exc) and "\n" not in str(exc)
                outcomes["refused"] += 1
    assert sum(outcomes.values()) == 1200
    assert outcomes["refused"] > 200 and outcomes["decoded"] > 200  # both paths were exercised


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(monkeypatch, tmp_path):
    path = tmp_path / "huge.jpg"
    path.write_bytes(image_bytes())
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the whole file was read"))
    with pytest.raises(ImageError, match=rf"^file is {path.stat().st_size:,} bytes, over the 100-byte limit$"):
        open_rgb(path)


def test_oversized_image_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageError, match="32x32 pixels, over the 100-pixel limit"):
        open_rgb(image_bytes())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_rgb(tmp_path / "gone.jpg")


def test_file_like_and_pil_sources_decode_alike(tmp_path):
    data = image_bytes(seed=5)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    expected = np.asarray(open_rgb(path))
    assert (np.asarray(open_rgb(io.BytesIO(data))) == expected).all()
    assert (np.asarray(open_rgb(Image.open(io.BytesIO(data)))) == expected).all()


def test_load_pixels_resizes_to_a_square_uint8_array():
    pixels = load_pixels(image_bytes(size=(50, 20)), 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8


def test_load_pixels_keeps_an_image_already_at_size():
    data = image_bytes(size=(16, 16))
    assert (load_pixels(data, 16) == np.asarray(open_rgb(data))).all()


@pytest.mark.parametrize(("name", "expected"), [("a.JPG", True), ("b.png", True), ("c.webp", True), ("d.txt", False)])
def test_is_image_file_goes_by_extension(name, expected):
    assert is_image_file(name) is expected
