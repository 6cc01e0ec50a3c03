import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from support.fixtures_models import make_bundle, tinted_image

from fish_classifier.cli.main import main
from fish_classifier.cpus import usable_cpus
from fish_classifier.serving.prediction_row import COLUMNS

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
    assert tuple(table.columns) == COLUMNS
    assert [Path(p).relative_to(photos).as_posix() for p in table["path"]] == [
        "a_red.png", "b_green.jpg", "nested/d_broken.jpg", "nested/deeper/c_blue.PNG"
    ]
    assert table["predicted"].tolist() == [RED, GREEN, "", BLUE]
    assert table["species"].tolist() == ["Trout", "Bass", "", "Mullet"]
    assert table["closest_species"].tolist() == ["", "", "", ""]
    assert table["error"].tolist()[2] == "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"
    assert table["top_k"][0].startswith(f"{RED}:") and table["top_k"][0].count(";") == 1
    assert table["confidence"][2] == ""
    assert table["unknown"].tolist() == ["False", "False", "", "False"]  # a file that could not be read is neither
    assert table["unknown_score"][2] == "" and all(float(table["unknown_score"][i]) >= 0 for i in (0, 1, 3))
    assert "wrote 4 predictions" in capsys.readouterr().err


def test_a_photo_unlike_every_species_is_marked_unknown_in_its_row(bundle, tmp_path, capsys):
    from support.app_bundles import text_photo

    table = _predicted_beside_a_red_fish(bundle, tmp_path, "receipt.png", text_photo("no fish"))
    assert table["unknown"].tolist() == [True, False]
    # No species for it, only the closest one, marked as such.
    assert table["species"][0] == "" and table["predicted"][0] == "" and table["closest_species"][0] != ""
    assert table["species"][1] == "Trout" and table["closest_species"][1] == ""
    assert float(table["unknown_score"][0]) > float(table["unknown_score"][1])
    assert "(1 unknown, " in capsys.readouterr().err


def test_a_photo_that_shows_nothing_is_unknown_with_its_reason_in_its_row(bundle, tmp_path):
    table = _predicted_beside_a_red_fish(bundle, tmp_path, "green.png", Image.new("RGB", (300, 200), (0, 255, 0)))
    assert table["unknown"].tolist() == [True, False]
    assert table["unknown_reason"].tolist() == [
        "the photo is one flat colour (brightness spread 0.0 of 255): nothing in it to see", ""]


def _predicted_beside_a_red_fish(bundle, tmp_path, name: str, photo) -> pd.DataFrame:
    """The CSV of `predict` on `photo` saved as `name`, then a red fish."""
    photo.save(tmp_path / name)
    tinted_image(RED, seed=4).save(tmp_path / "red.png")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(tmp_path / name), str(tmp_path / "red.png"), "--out", str(out),
                 "--bundle", bundle]) == 0
    return pd.read_csv(out, keep_default_na=False)


def test_files_and_folders_mix_and_keep_the_order_given(bundle, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(photos / "b_green.jpg"), str(photos / "nested" / "deeper"), "--out", str(out),
                 "--bundle", bundle, "--batch-size", "1"])
    assert code == 0
    assert pd.read_csv(out)["predicted"].tolist() == [GREEN, BLUE]


def test_timings_say_where_the_time_went_in_one_line(bundle, photos, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(photos), "--out", str(out), "--bundle", bundle, "--batch-size", "2"]) == 0
    assert "timings:" not in capsys.readouterr().err

    assert main(["predict", str(photos), "--out", str(out), "--bundle", bundle, "--batch-size", "2", "--timings"]) == 0

    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("timings:")]
    match = re.fullmatch(r"timings: 4 photos in ([\d.]+) s \([\d.]+ photos/s\): (.*); decoding ([\d.]+) s and "
                         r"resizing ([\d.]+) s of CPU on (\d+) threads?", line)
    assert match, line
    total, steps, threads = float(match[1]), dict(step.rsplit(" ", 2)[:2] for step in match[2].split(", ")), match[5]
    assert list(steps) == ["loading the bundle", "model", "waiting for photos", "ranking", "CSV", "other"]
    assert sum(map(float, steps.values())) == pytest.approx(total, abs=0.02)  # the main thread's steps add up
    assert int(threads) == usable_cpus()  # the photos are files: decoded beside the model


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


@pytest.mark.parametrize("out", ["photos/a_red.png", "photos/nested/deeper/c_blue.PNG", "photos/nested/../b_green.jpg"])
def test_an_out_that_is_one_of_the_input_images_is_refused_untouched(bundle, photos, tmp_path, capsys, out):
    before = (tmp_path / out).read_bytes()
    assert main(["predict", str(photos), "--out", str(tmp_path / out), "--bundle", bundle]) == 2
    err = capsys.readouterr().err
    assert err == f"fish-classifier: error: --out {tmp_path / out} is one of the input images; write the CSV elsewhere\n"
    assert (tmp_path / out).read_bytes() == before


def test_an_out_that_is_a_folder_is_refused(bundle, photos, tmp_path, capsys):
    assert main(["predict", str(photos / "a_red.png"), "--out", str(tmp_path), "--bundle", bundle]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"fish-classifier: error: --out {tmp_path} is a folder; give the CSV file to write, "
        f"e.g. {tmp_path / 'predictions.csv'}\n"
    )


def test_an_interrupted_run_leaves_the_old_csv_and_no_partial_file(bundle, photos, tmp_path, capsys, monkeypatch):
    from fish_classifier.serving.predictor import Predictor

    out = tmp_path / "results" / "predictions.csv"
    out.parent.mkdir()
    out.write_text("the previous run's predictions\n")
    original_iter_predict, written = Predictor.iter_predict, []

    def ctrl_c_on_the_second_batch(self, images, *args, **kwargs):
        for prediction in original_iter_predict(self, images, *args, **kwargs):
            if written:
                raise KeyboardInterrupt
            written.append(prediction)
            yield prediction

    monkeypatch.setattr(Predictor, "iter_predict", ctrl_c_on_the_second_batch)
    code = main(["predict", str(photos), "--out", str(out), "--bundle", bundle, "--batch-size", "1"])

    assert code == 130
    assert capsys.readouterr().err.endswith("fish-classifier: interrupted\n")
    assert len(written) == 1  # one row was written to the partial file before the interrupt
    assert out.read_text() == "the previous run's predictions\n"
    assert [p.name for p in out.parent.iterdir()] == ["predictions.csv"]


def test_a_finished_run_replaces_the_old_csv_and_leaves_no_partial_file(bundle, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    out.write_text("the previous run's predictions\n")
    assert main(["predict", str(photos / "a_red.png"), "--out", str(out), "--bundle", bundle]) == 0
    assert pd.read_csv(out)["predicted"].tolist() == [RED]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "predictions.csv"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("1.5", "must be between 0 and 1, got 1.5"), ("-0.1", "must be between 0 and 1, got -0.1"),
     ("nan", "must be between 0 and 1, got nan"), ("high", "must be a number between 0 and 1, got 'high'")],
)  # fmt: skip
def test_a_threshold_outside_0_to_1_is_refused_by_argparse(value, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["predict", "x.jpg", "--threshold", value])
    assert caught.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line == f"fish-classifier predict: error: argument --threshold: {message}"


def test_thresholds_at_the_ends_of_0_to_1_are_accepted(bundle, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    for threshold in (0.0, 1.0):
        assert main(["predict", str(photos / "a_red.png"), "--out", str(out), "--bundle", bundle,
                     "--threshold", str(threshold)]) == 0  # fmt: skip
        [row] = pd.read_csv(out).to_dict("records")
        assert row["low_confidence"] == (row["confidence"] < threshold)


@pytest.mark.slow
def test_python_dash_m_runs_the_same_command(bundle, photos, tmp_path):
    out = tmp_path / "predictions.csv"
    run = subprocess.run(
        [sys.executable, "-m", "fish_classifier", "predict", str(photos / "a_red.png"), "--out", str(out),
         "--bundle", bundle],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert pd.read_csv(out)["predicted"].tolist() == [RED]


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"fish-classifier {version('fish-classifier')}\n"


def _csv_rows(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_photos_named_like_formulas_get_a_leading_quote_that_still_names_them(bundle, tmp_path, monkeypatch):
    names = ['=HYPERLINK("evil.example";"x").jpg', "+1.png", "-2.png", "@SUM(A1).png"]
    for seed, name in enumerate(names):
        tinted_image(RED, seed=seed).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)  # as `fish-classifier predict *.jpg` names them: the cell starts with the name

    assert main(["predict", "--out", "p.csv", "--bundle", bundle, "--", *names]) == 0  # `--`: -2.png is no option

    rows = _csv_rows((tmp_path / "p.csv").read_text(encoding="utf-8"))
    assert [r["path"] for r in rows] == ["'" + name for name in names]
    assert [r["predicted"] for r in rows] == [RED] * 4


def test_a_file_name_that_is_not_utf8_gets_a_readable_row_and_the_others_are_predicted(bundle, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    tinted_image(GREEN, seed=1).save(os.fsencode(folder) + b"/bad\xff.png", format="PNG")
    tinted_image(RED, seed=2).save(folder / "red.png")
    out = tmp_path / "p.csv"

    assert main(["predict", str(folder), "--out", str(out), "--bundle", bundle]) == 0

    rows = _csv_rows(out.read_bytes().decode("utf-8"))  # strict: the file is UTF-8 throughout
    assert [r["path"] for r in rows] == [f"{folder}/bad\\xff.png", f"{folder}/red.png"]
    assert [r["predicted"] for r in rows] == [GREEN, RED] and [r["error"] for r in rows] == ["", ""]
    assert f"wrote 2 predictions to {out} (" in capsys.readouterr().err  # capsys, like a UTF-8 terminal, is strict


def test_a_missing_path_that_is_not_utf8_is_named_readably(bundle, tmp_path, capsys):
    missing = os.fsdecode(os.fsencode(tmp_path) + b"/gone\xff.jpg")
    assert main(["predict", missing, "--bundle", bundle]) == 2
    assert capsys.readouterr().err == f"fish-classifier: error: no such file or folder: {tmp_path}/gone\\xff.jpg\n"


def test_a_named_pipe_is_written_into_as_a_stream_and_stays_a_pipe(bundle, photos, tmp_path):
    import stat
    import threading

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)  # no hang if it fails
    reader.start()

    code = main(["predict", str(photos / "a_red.png"), "--out", str(pipe), "--bundle", bundle])
    reader.join(timeout=60)

    assert code == 0
    assert [(r["path"], r["predicted"]) for r in _csv_rows(received[0])] == [(str(photos / "a_red.png"), RED)]
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "pipe"]


def test_dev_null_stays_a_device(bundle, photos, capsys, device):
    import stat

    null = device("null")  # as root a copy of /dev/null's node: a regression must not replace the machine's
    assert main(["predict", str(photos / "a_red.png"), "--out", null, "--bundle", bundle]) == 0
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(1, 3)
    assert os.listdir(Path(null).parent) == ["null"]
    assert f"wrote 1 predictions to {null} (" in capsys.readouterr().err


def test_a_shells_pipe_as_dev_fd_is_written_into(bundle, photos):
    import threading

    read_end, write_end = os.pipe()
    received = []
    reader = threading.Thread(target=lambda: received.append(os.fdopen(read_end).read()), daemon=True)
    reader.start()
    try:
        code = main(["predict", str(photos / "a_red.png"), "--out", f"/dev/fd/{write_end}", "--bundle", bundle])
    finally:
        os.close(write_end)
    reader.join(timeout=60)

    assert code == 0
    assert [r["predicted"] for r in _csv_rows(received[0])] == [RED]


def test_stdout_sent_to_a_file_is_appended_to_not_replaced(bundle, photos, capfd):
    print("what the shell's file held before", flush=True)  # capfd: fd 1 is a regular file, as with `>> log`

    # /dev/stdout is a link to this; /proc, unlike /dev, is where a regression could not replace it
    assert main(["predict", str(photos / "a_red.png"), "--out", "/proc/self/fd/1", "--bundle", bundle]) == 0

    before, table = capfd.readouterr().out.split("\n", 1)
    assert before == "what the shell's file held before"
    assert [r["predicted"] for r in _csv_rows(table)] == [RED]


def test_a_full_disk_is_one_line_and_exit_status_1(bundle, photos, capsys, device):
    full = device("full")
    assert main(["predict", str(photos / "a_red.png"), "--out", full, "--bundle", bundle]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"fish-classifier: error: cannot write {full}: No space left on device")


@pytest.mark.parametrize("under", ["a_file/p.csv", "a_file/deeper/p.csv"])
def test_an_out_under_a_file_is_a_usage_error_in_one_line(bundle, photos, tmp_path, capsys, under):
    (tmp_path / "a_file").write_text("not a folder\n")

    assert main(["predict", str(photos / "a_red.png"), "--out", str(tmp_path / under), "--bundle", bundle]) == 2

    assert capsys.readouterr().err.splitlines()[-1] == (
        f"fish-classifier: error: cannot write {tmp_path / under}: {tmp_path / 'a_file'} is a file, not a folder")
    assert (tmp_path / "a_file").read_text() == "not a folder\n"


@pytest.mark.parametrize("how", ["chmod", "open refused"])
def test_an_out_in_a_read_only_folder_is_a_usage_error_in_one_line(bundle, photos, tmp_path, capsys, monkeypatch,
                                                                   how):
    """Root writes through a chmod 555 folder, and the tests run as root: there the refusal comes from the
    CSV module's `open`, patched to answer as the kernel does to anyone else."""
    import errno

    from fish_classifier.cli import predictions_csv

    folder = tmp_path / "read_only"
    folder.mkdir()
    (folder / "p.csv").write_text("the previous run's predictions\n")
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        folder.chmod(0o555)
    else:
        def refused(path, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        monkeypatch.setattr(predictions_csv, "open", refused, raising=False)

    code = main(["predict", str(photos / "a_red.png"), "--out", str(folder / "p.csv"), "--bundle", bundle])
    folder.chmod(0o755)

    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"fish-classifier: error: cannot write {folder / 'p.csv'}: Permission denied")
    assert (folder / "p.csv").read_text() == "the previous run's predictions\n"
    assert [p.name for p in folder.iterdir()] == ["p.csv"]


@pytest.mark.parametrize("how", ["chmod", "listing refused"])
def test_an_unreadable_sub_folder_is_named_on_stderr_and_counted(bundle, photos, tmp_path, capsys, monkeypatch, how):
    """As root a chmod 000 folder still lists: there `os.scandir`, which `os.walk` lists with, is patched."""
    import errno

    locked = photos / "nested" / "deeper"
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root lists a chmod 000 folder")
        locked.chmod(0)
    else:
        scandir = os.scandir

        def refused(path="."):
            if os.fspath(path) == str(locked):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return scandir(path)

        monkeypatch.setattr(os, "scandir", refused)
    out = tmp_path / "p.csv"

    code = main(["predict", str(photos), "--out", str(out), "--bundle", bundle])
    locked.chmod(0o755)

    assert code == 0
    err = capsys.readouterr().err
    assert (f"fish-classifier: warning: cannot read the folder {locked} (Permission denied); its images are left out"
            in err.splitlines())
    assert re.search(rf"wrote 3 predictions to {re.escape(str(out))} \(.*, 1 unreadable, 1 folder unreadable\)\n$", err)
    assert [Path(p).name for p in pd.read_csv(out)["path"]] == ["a_red.png", "b_green.jpg", "d_broken.jpg"]


SLOW_PREDICTOR = """
import sys, time
from fish_classifier.serving import predictor
from fish_classifier.cli.main import main

class SlowPredictor:  # one row, then a long wait for the next: time for the test to send SIGTERM
    def __init__(self, bundle, batch_size):
        pass

    def iter_predict(self, images, top_k=None, threshold=None, timings=None):
        yield predictor.Prediction(source=images[0], label="x", display_name="X", confidence=0.9)
        print("one row written", flush=True)
        time.sleep(120)

predictor.Predictor = SlowPredictor
sys.exit(main())
"""


def test_sigterm_leaves_the_old_csv_and_no_partial_file(photos, tmp_path):
    import signal

    driver = tmp_path / "slow_predict.py"
    driver.write_text(SLOW_PREDICTOR)
    out = tmp_path / "results" / "predictions.csv"
    out.parent.mkdir()
    out.write_text("the previous run's predictions\n")

    run = subprocess.Popen([sys.executable, str(driver), "predict", str(photos), "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline() == "one row written\n", run.stderr.read()
        assert [p.name for p in out.parent.iterdir() if ".partial-" in p.name]  # the run had begun its CSV
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()

    assert run.returncode == 143
    assert err.endswith("fish-classifier: terminated\n")
    assert out.read_text() == "the previous run's predictions\n"
    assert [p.name for p in out.parent.iterdir()] == ["predictions.csv"]


def test_the_sigterm_handler_is_put_back_after_a_run(bundle, photos, tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert main(["predict", str(photos / "a_red.png"), "--out", str(tmp_path / "p.csv"), "--bundle", bundle]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_command_line_starts_without_the_feedback_store_or_the_training_libraries():
    # Every command builds the whole parser, feedback's included: its store (SQLAlchemy, 0.2 s of CPU) loads only
    # when a feedback command runs, so `predict` on a few photos pays nothing for it.
    code = ("import sys\nfrom fish_classifier.cli.main import main\ntry:\n    main(['predict', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('sqlalchemy', 'tensorflow', 'keras', 'pandas', 'sklearn', 'matplotlib') "
            "if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: fish-classifier predict" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]"
