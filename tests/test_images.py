import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from support import REPO_ROOT
from support.synthetic_images import (
    byte_flips,
    flat_16_bit_png,
    fuzz_originals,
    image_bytes,
    noise_image,
    tiff_without_dimensions,
    truncated_jpeg_bytes,
)

from fish_classifier import images
from fish_classifier.images import IMAGE_EXTENSIONS, IMAGE_FORMATS, ImageError, is_image_file, load_pixels, open_rgb

NOT_ACCEPTED = "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"
DEV_ZIP = REPO_ROOT.parent / "shared" / "data" / "fish-dev.zip"


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
        open_rgb(image_bytes(orientation=6))


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


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` RGB pixels and whose data is empty: decoding it would fail."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (12000, 10000), (60000, 60000)])
def test_an_image_bomb_is_named_with_its_size_and_the_projects_pixel_limit(width, height):
    """Over twice Image.MAX_IMAGE_PIXELS Pillow refuses first, quoting its own doubled limit (100,000,000): the
    message names the project's 50,000,000 and the image's size either way, before any pixel is decoded."""
    assert images.MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 50_000_000
    with pytest.raises(ImageError) as refused:
        open_rgb(_header_only_png(width, height))
    assert str(refused.value) == f"image is {width}x{height} pixels, over the 50,000,000-pixel limit"


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


def _jpeg(size, seed=0, orientation=None) -> bytes:
    """A smooth photo-like JPEG (noise would make DCT scaling look worse than it is on photos)."""
    width, height = size
    yy, xx = np.mgrid[:height, :width]
    rng = np.random.default_rng(seed)
    waves = [128 + 100 * np.sin(xx / (37 + 9 * c) + yy / (53 - 7 * c) + rng.uniform(0, 6)) for c in range(3)]
    pixels = np.stack(waves, axis=-1)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def _full_decode(data: bytes) -> Image.Image:
    """How `open_rgb` read an 8-bit photo before it learnt to decode near the size asked for."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def _full_decode_pixels(data: bytes, size: int) -> np.ndarray:
    return np.asarray(_full_decode(data).resize((size, size), Image.Resampling.BILINEAR))


def test_every_16_bit_value_becomes_the_nearest_8_bit_one_band_by_band(monkeypatch):
    monkeypatch.setattr(images, "BAND_PIXELS", 1000)  # 3 rows at a time: many bands, and a short last one
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    pixels = np.asarray(open_rgb(_png(Image.fromarray(values))))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert (pixels == expected[..., np.newaxis]).all()


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # 32-bit integers beyond 8 bits are 16-bit data (scaled by 257); negatives and overflow are clipped.
        (np.array([[-5, 0, 128 * 257, 65535, 10**7]], dtype=np.int32), [0, 0, 128, 255, 255]),
        # 32-bit integers within 0..255 are 8-bit data, kept as they are.
        (np.array([[-5, 0, 7, 200, 255]], dtype=np.int32), [0, 0, 7, 200, 255]),
        # Floats are rounded (half to even) and clipped.
        (np.array([[-1.5, 0.5, 1.5, 254.6, 300.0]], dtype=np.float32), [0, 0, 2, 255, 255]),
    ],
)
def test_32_bit_integer_and_float_images_become_8_bit(samples, expected):
    assert [pixel[0] for pixel in open_rgb(Image.fromarray(samples)).getdata()] == expected


def test_an_image_whose_decoded_samples_cost_too_much_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 2000)
    sixteen_bit = _png(Image.fromarray(np.zeros((30, 40), dtype=np.uint16)))
    with pytest.raises(ImageError) as caught:
        open_rgb(sixteen_bit)
    assert str(caught.value) == "image is 40x30 pixels at 2 bytes each (2,400 bytes decoded), over the 2,000-byte limit"
    # The same pixels at 8 bits cost half as much, and pass.
    assert open_rgb(_png(Image.fromarray(np.zeros((30, 40), dtype=np.uint8)))).size == (40, 30)


def test_a_jpeg_four_times_the_size_asked_for_is_decoded_at_no_less_than_twice_it():
    data = _jpeg((1000, 800))
    assert open_rgb(data).size == (1000, 800)
    assert open_rgb(data, target_size=100).size == (250, 200)  # DCT scaling by 4: both sides still >= 200
    # The model's input barely changes: a grey level or two in a smooth photo.
    difference = np.abs(load_pixels(data, 100).astype(int) - _full_decode_pixels(data, 100))
    assert difference.mean() < 1.0 and difference.max() <= 12


def test_a_photo_under_four_times_the_size_asked_for_is_decoded_in_full():
    data = _jpeg((399, 420))
    assert open_rgb(data, target_size=100).size == (399, 420)
    assert (load_pixels(data, 100) == _full_decode_pixels(data, 100)).all()


def test_a_turned_photo_is_shrunk_and_then_turned():
    data = _jpeg((1000, 600), orientation=6)
    assert open_rgb(data, target_size=100).size == (300, 500)  # decoded at 500x300, then turned upright


def test_a_large_16_bit_png_is_averaged_down_to_twice_the_size_asked_for():
    data = _png(Image.fromarray(np.full((900, 1000), 257 * 80, dtype=np.uint16)))
    image = open_rgb(data, target_size=100)
    assert image.size == (250, 225)  # 900 // 200 = 4 pixels a side averaged into one
    assert image.getpixel((10, 10)) == (80, 80, 80)


@pytest.mark.parametrize(
    "data",
    [_jpeg((1000, 800)), _jpeg((1000, 600), orientation=6), _jpeg((120, 90)), image_bytes("I;16", size=(900, 450))],
    ids=["large jpeg", "turned jpeg", "small jpeg", "large 16-bit png"],
)
def test_pixels_of_a_photo_decoded_for_the_model_equal_the_pixels_of_its_file(data):
    # The app decodes an upload once, for display and the model; the model must see what the CLI sees.
    assert (load_pixels(open_rgb(data, target_size=64), 64) == load_pixels(data, 64)).all()


def test_a_decoded_phone_photo_holds_no_reference_to_the_file_bytes():
    # Pillow keeps an MPO's file open after decoding it, for its other frames; phones send MPO JPEGs.
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (255, 0, 0)).save(buffer, format="MPO", save_all=True, append_images=[noise_image()])
    data = buffer.getvalue()
    references = sys.getrefcount(data)
    image = open_rgb(data)
    assert image.size == (64, 48)
    assert sys.getrefcount(data) == references  # a cached image does not keep the upload alive


@pytest.mark.slow
@pytest.mark.skipif(not DEV_ZIP.is_file(), reason=f"the dev photos are not here ({DEV_ZIP}); they come with ../shared")
def test_dev_photos_load_bit_for_bit_as_before_at_the_models_sizes():
    with zipfile.ZipFile(DEV_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        photos = [archive.read(n) for n in names]
    assert len(photos) > 1000
    changed = []
    for name, data in zip(names, photos):
        before = _full_decode(data)
        for size in (96, 224):  # the custom CNN's input and the ImageNet backbones'
            expected = np.asarray(before.resize((size, size), Image.Resampling.BILINEAR))
            if (load_pixels(data, size) != expected).any():
                changed.append((name, size))
    assert not changed, f"{len(changed)} dev photos read differently, e.g. {changed[:3]}"


MEASURE_DECODE = """
import json, sys
from fish_classifier.images import load_pixels

def kilobytes(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

data = open(sys.argv[1], "rb").read()
try:  # start the high-water mark afresh, so the imports' peak cannot hide the decode's
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
except OSError:
    pass
resting = kilobytes("VmRSS")
pixels = load_pixels(data, 224)
print(json.dumps({"shape": list(pixels.shape), "peak_mb": (kilobytes("VmHWM") - resting) / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads peak memory from Linux's /proc")
def test_a_7000x7000_16_bit_png_decodes_in_under_300_mb(tmp_path):
    # Issue 18: this 138 KB file once cost the Predictor more than 1.2 GB, through a float64 copy of it.
    path = tmp_path / "flat-16-bit.png"
    path.write_bytes(flat_16_bit_png(7000, 7000))
    result = subprocess.run(
        [sys.executable, "-c", MEASURE_DECODE, str(path)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["shape"] == [224, 224, 3]
    # 98 MB of 16-bit samples and their 49 MB 8-bit copy; the old float64 path went past 1,200 MB.
    assert measured["peak_mb"] < 300, measured

