import os
import stat

import pytest

from fish_classifier.cli.predictions_csv import OutputError, PredictionsCsv, is_stream
from fish_classifier.serving.prediction_row import COLUMNS, Prediction


def test_what_exists_and_is_not_a_regular_file_is_a_stream(tmp_path):
    (tmp_path / "old.csv").write_text("old\n")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link.csv").symlink_to(tmp_path / "old.csv")
    assert not is_stream(tmp_path / "old.csv") and not is_stream(tmp_path / "new.csv")
    assert not is_stream(tmp_path / "link.csv")  # a link to a regular file: its target is replaced, the link kept
    assert is_stream(tmp_path / "pipe")
    assert is_stream("/dev/null") and is_stream("/dev/stdout")


def test_a_link_to_a_csv_keeps_its_link_and_gets_the_new_file(tmp_path):
    (tmp_path / "real.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to("real.csv")

    with PredictionsCsv(tmp_path / "link.csv") as out:
        out.write(Prediction(source="a.jpg", label="x", display_name="X", confidence=1.0))
        out.commit()

    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().splitlines() == [",".join(COLUMNS), "a.jpg,x,X,,1.000000,False,False,,,,"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]


def test_leaving_without_commit_leaves_the_old_file_and_no_hidden_one(tmp_path):
    (tmp_path / "p.csv").write_text("old\n")
    with PredictionsCsv(tmp_path / "p.csv") as out:
        out.write(Prediction(source="a.jpg", label="x", display_name="X", confidence=1.0))
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.csv.partial-")]
    assert (tmp_path / "p.csv").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_a_full_disk_is_an_output_error_naming_the_file(device):
    full = device("full")  # as root a copy of /dev/full's node: a regression must not replace the machine's
    with pytest.raises(OutputError) as caught, PredictionsCsv(full) as out:
        out.write(Prediction(source="a.jpg", label="x", display_name="X", confidence=1.0))
        out.commit()
    assert str(caught.value) == f"cannot write {full}: No space left on device"
    assert stat.S_ISCHR(os.stat(full).st_mode)
