from fish_classifier.params import load_params


def test_exponent_floats_as_dvc_exp_run_writes_them_are_floats(tmp_path):
    # `dvc exp run -S train.mobilenetv2.fine_tune_lr=0.00003` writes `3e-05`; YAML 1.1 would read a string.
    path = tmp_path / "params.yaml"
    path.write_text(
        "train:\n"
        "  lr: 3e-05\n"
        "  big: 1E+3\n"
        "  dotted: 1.5e-4\n"
        "  plain: 0.001\n"
        "  epochs: 12\n"
        "  name: e5\n"
        "  version: '1e5'\n"
    )
    train = load_params(path)["train"]
    assert train == {"lr": 3e-05, "big": 1000.0, "dotted": 1.5e-4, "plain": 0.001, "epochs": 12,
                     "name": "e5", "version": "1e5"}
    assert [type(train[k]) for k in ("lr", "big", "dotted", "plain", "epochs")] == [float, float, float, float, int]


def test_the_projects_params_load_with_every_learning_rate_a_number():
    train = load_params()["train"]
    for model in train["models"]:
        for key, value in train[model].items():
            if key.endswith("lr"):
                assert isinstance(value, float), (model, key, value)
