"""bench/memory.py, tiny: the memory figures it reads, and one case measured on a colour bundle."""

import io

import pytest
from PIL import Image
from support.app_bundles import colour_photo
from support.benches import load_bench

memory = load_bench("memory")


def test_memory_figures_come_from_proc():
    resting = memory.kilobytes("VmRSS")
    assert 0 < resting <= memory.kilobytes("VmHWM")


@pytest.mark.slow  # 12 megapixels of noise: several seconds
def test_the_photo_like_jpeg_is_the_size_the_case_needs():
    photo = Image.open(io.BytesIO(memory.photo_jpeg(0)))
    assert photo.format == "JPEG" and photo.size == memory.JPEG_SIZE


def test_one_case_is_measured_through_the_predictor(colour_bundle, tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"photo-{i}.png")
        colour_photo(i, 300, seed=i).save(paths[-1])
    row = memory.measure(colour_bundle, paths)
    assert row["backend"] == "litert" and row["errors"] == []
    assert row["resting_mb"] > 0 and row["peak_above_resting_mb"] >= 0
