"""bench/frozen_pass.py, tiny: one backbone's frozen pass at 32 px, in Keras and in LiteRT, over four photos."""

import pytest
from support.benches import load_bench
from support.training_data import settings, write_colour_images

frozen_pass = load_bench("frozen_pass")


@pytest.mark.slow  # the LiteRT export alone takes half a minute on 2 cores
def test_one_backbone_compares_both_runtimes(tmp_path):
    paths = [path for path, _ in write_colour_images(tmp_path, per_class=2, size=40)][:4]
    row = frozen_pass.compare("mobilenetv2", paths, settings("mobilenetv2"), image_size=32)
    assert set(row) == {"keras_ms", "litert_ms", "export_s", "max_rel_diff"}
    assert row["keras_ms"] > 0 and row["litert_ms"] > 0 and row["export_s"] > 0
    assert row["max_rel_diff"] < 1e-3  # the same float32 function in both


def test_only_backbones_are_offered(capsys):
    with pytest.raises(SystemExit) as stopped:
        frozen_pass.main(["--models", "cnn"])
    assert stopped.value.code == 2 and "invalid choice: 'cnn'" in capsys.readouterr().err
