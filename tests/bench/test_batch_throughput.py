"""bench/batch_throughput.py, tiny: batched invokes against one photo per invoke, and one short run of predict."""

import re

import numpy as np
import pytest
from support.app_bundles import colour_photo
from support.benches import load_bench

from fish_classifier.serving.inference import LiteRTBackend

batch_throughput = load_bench("batch_throughput")


def test_batched_invokes_give_what_one_photo_per_invoke_gives(colour_bundle):
    pixels = np.stack([np.asarray(colour_photo(i % 3, 32, seed=i)) for i in range(5)])
    alone = LiteRTBackend(colour_bundle / "model.tflite")
    batched = batch_throughput.BatchedRunner(colour_bundle / "model.tflite")
    assert batched.outputs(pixels[:2])["probabilities"].shape == (2, 3)
    assert batch_throughput.largest_difference(alone, batched, pixels, 2) < 1e-4
    assert batch_throughput.model_seconds(batched, pixels, 2) > 0


def test_a_bundle_without_a_folder_is_named(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        batch_throughput.main([str(tmp_path), "--bundle", str(tmp_path / "nowhere")])
    assert "nowhere" in str(stopped.value) and str(stopped.value).endswith("(or pass --bundle DIR)")


def test_one_round_sets_predict_beside_the_model_alone(colour_bundle, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        colour_photo(i % 3, 48, seed=i).save(photos / f"photo-{i}.jpg")
    batch_throughput.main([str(photos), "--bundle", str(colour_bundle), "--batch-size", "2", "--rounds", "1"])
    out = capsys.readouterr().out
    assert out.startswith("colour-test-cnn at 32 px, 4 photos, batches of 2, ")
    alone, predict = map(float, re.search(r"model alone ([\d.]+) photos/s, fish-classifier predict ([\d.]+) "
                                          r"photos/s end to end", out).groups())
    assert alone > 0 and predict > 0
    assert re.search(r"outputs differ by at most \d\.\de[-+]\d\d", out)
    assert re.search(r"last predict run: [\d.]+ s, of which process start and imports [\d.]+ s; its timings: ", out)
