"""bench/train_speed.py, tiny: its arguments and its refusal without prepared data (both recipes need MobileNetV2
at 224 px on the dev data, minutes, not seconds)."""

import pytest
from support.benches import load_bench

train_speed = load_bench("train_speed")


def test_without_prepared_data_it_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        train_speed.main(["--epochs", "2"])
    assert str(stopped.value).startswith("data/manifest.csv is missing: prepare the dev data first")


def test_the_epochs_must_be_a_number(capsys):
    with pytest.raises(SystemExit) as stopped:
        train_speed.main(["--epochs", "many"])
    assert stopped.value.code == 2 and "--epochs: invalid int value: 'many'" in capsys.readouterr().err
