import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fixtures_models import make_bundle, tinted_image

from fish_classifier.cli import PREDICTION_COLUMNS, main

RED, GREEN, BLUE = "fish sea_food red_tinted", "fish sea_food green_tinted", "fish sea_food blue_tinted"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "deploy")


@pytest.fixture
def photos(tmp_path):
    """A folder tree: two readable photos at the top, one nested, one broken, and a text file to skip."""
    folder = tmp_path / "photos"
    (folder / "nested" / "deeper").mkdir(parents=True)
    tinted_image(RED, seed=1).save(folder / "a_red.png")
    tinted_image(GREEN, seed=2).save(folder / "b_green.jpg", quality=95)
    tinted_image(BLUE, seed=3).save(folder / "nested" / "deeper" / "c_blue.PNG")
    (folder / "nested" / "d_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "readme.txt").write_text("not an image, and not an image extension")
    return folder


def test_predicts_a_folder_recursively_into_a_csv(bundle, photos, tmp_path, capsys):
    out = tmp_path / "out" / "predictions.csv"

    code = main(["predict", str(photos), "--out", str(out), "--bundle", bundle, "--top-k", "2"])

    assert code == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert table.columns.tolist() == PREDICTION_COLUMNS
    assert [Path(p).relative_to(photos).as_posix() for p in table["path"]] == [
        "a_red.png", "b_green.jpg", "nested/d_broken.jpg", "nested/deeper/c_blue.PNG"
    ]
    assert table["label"].tolist() == [RED, GREEN, "", BLUE]
    assert table["display_name"].tolist() == ["Trout", "Bass", "", "Mullet"]
    assert table["error"].tolist()[2] == "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"
    assert table["top_k"][0].startswith(f"{RED}:") and table["top_k"][0].count(";") == 1
    assert table["confidence"][2] == ""
    assert "wrote 4 predictions" in capsys.readouterr().err


def test_files_and_folders_mix_and_keep_the_order_given(bundle, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(photos / "b_green.jpg"), str(photos / "nested" / "deeper"), "--out", str(out),
                 "--bundle", bundle, "--batch-size", "1"])
    assert code == 0
    assert pd.read_csv(out)["label"].tolist() == [GREEN, BLUE]


def test_a_missing_bundle_is_a_usage_error_with_a_clear_message(photos, tmp_path, capsys):
    code = main(["predict", str(photos), "--out", str(tmp_path / "p.csv"), "--bundle", str(tmp_path / "no_bundle")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no deploy bundle at" in err and "no_bundle" in err and "dvc repro" in err
    assert not (tmp_path / "p.csv").exists()


def test_missing_paths_and_empty_folders_are_usage_errors(bundle, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.jpg"), "--bundle", bundle]) == 2
    assert "no such file or folder: " in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--bundle", bundle]) == 2
    assert "no images found in" in capsys.readouterr().err


def test_bad_arguments_exit_through_argparse(capsys):
    with pytest.raises(SystemExit) as no_command:
        main([])
    assert no_command.value.code == 2
    with pytest.raises(SystemExit) as bad_top_k:
        main(["predict", "x.jpg", "--top-k", "0"])
    assert bad_top_k.value.code == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_runs_the_same_command(bundle, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    run = subprocess.run(
        [sys.executable, "-m", "fish_classifier", "predict", str(photos / "a_red.png"), "--out", str(out),
         "--bundle", bundle],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert pd.read_csv(out)["label"].tolist() == [RED]
