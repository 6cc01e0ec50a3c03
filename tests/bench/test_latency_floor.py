"""bench/latency_floor.py, tiny: the multiply-add count, the GEMM rate, and one short run on a colour bundle."""

import re

import keras
import pytest
from support.benches import load_bench

latency_floor = load_bench("latency_floor")


def test_multiply_adds_are_counted_from_the_layer_shapes():
    pixels = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(pixels)  # 8 * 8 * 4 outputs of 3 * 3 * 3 each: 6,912
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8 * 8 * 4 outputs of 3 * 3 each: 2,304
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(pixels, keras.layers.Dense(5)(x))  # 4 * 5: 20
    assert latency_floor.multiply_adds(model) == 6912 + 2304 + 20
    assert latency_floor.matmul_gflops(64, repeats=2) > 0


def test_a_missing_bundle_is_named(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        latency_floor.main(["--bundle", str(tmp_path / "nowhere")])
    assert "nowhere" in str(stopped.value) and str(stopped.value).endswith("(or pass --bundle DIR)")


def test_one_short_run_times_every_row_of_a_bundle(colour_bundle, capsys):
    from fish_classifier.model.preprocessing import load_model

    latency_floor.main(["--bundle", str(colour_bundle), "--rounds", "1", "--calls", "2", "--matmul-size", "64"])
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(.+?)\s+(\d+\.\d\d)\s+\d+\.\d\d$", out, flags=re.MULTILINE))
    # Not a zoo backbone: no stock export to set beside it.
    assert set(rows) == {"bundle model", "JPEG to pixels", "Predictor", "no unknown check"}
    assert all(float(p50) > 0 for p50 in rows.values())
    assert out.startswith("colour-test-cnn at 32 px, ") and "the unknown-photo check (" in out
    # One 3x3 conv of 8 filters on 32x32x3 (221,184) and the 8x3 head (24).
    assert latency_floor.multiply_adds(load_model(colour_bundle / "model.keras")) == 221208


def test_a_baseline_bundle_is_timed_beside_and_the_ratio_printed(colour_bundle, capsys):
    latency_floor.main(["--bundle", str(colour_bundle), "--baseline", str(colour_bundle), "--rounds", "1",
                        "--calls", "2", "--matmul-size", "64"])
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(.+?)\s+(\d+\.\d\d)\s+\d+\.\d\d$", out, flags=re.MULTILINE))
    assert "baseline" in rows and float(rows["baseline"]) > 0
    ratio = float(re.search(r"the Predictor's p50 is (\d+\.\d\d)x the baseline bundle's", out).group(1))
    assert ratio == pytest.approx(float(rows["Predictor"]) / float(rows["baseline"]), abs=0.02)
