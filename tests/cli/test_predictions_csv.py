import math
import os
import stat

import pytest

from fish_classifier.serving.predictor import Prediction
from fish_classifier.tools.predictions_csv import COLUMNS, OutputError, PredictionsCsv, is_stream, readable, row


def test_every_text_cell_a_spreadsheet_would_run_gets_a_leading_quote():
    prediction = Prediction(source="=HYPERLINK(\"evil.example\";\"x\").jpg", label="+label", display_name="@Trout",
                            confidence=0.5, top_k=[("-label", "Trout", 0.5)], error="=oops")

    cells = row(prediction)

    assert list(cells) == COLUMNS
    assert cells["path"] == "'=HYPERLINK(\"evil.example\";\"x\").jpg"
    assert (cells["label"], cells["display_name"], cells["error"]) == ("'+label", "'@Trout", "'=oops")
    assert cells["top_k"].startswith("'-label:")
    assert (cells["confidence"], cells["is_low_confidence"], cells["is_unknown"]) == ("0.500000", False, False)


def test_a_failed_prediction_has_empty_numbers_and_its_error():
    cells = row(Prediction(source="a.jpg", label=None, display_name=None, confidence=math.nan, error="file is empty"))
    assert cells == {"path": "a.jpg", "label": "", "display_name": "", "confidence": "", "is_low_confidence": False,
                     "is_unknown": False, "unknown_score": "", "unknown_reason": "", "top_k": "",
                     "error": "file is empty"}


@pytest.mark.parametrize(
    ("name", "shown"),
    [(os.fsdecode(b"bad\xff.jpg"), "bad\\xff.jpg"), ("caf\u00e9.jpg", "caf\u00e9.jpg"), ("plain.jpg", "plain.jpg"),
     ("lone\ud800.jpg", "lone\\ud800.jpg")],
)  # fmt: skip
def test_a_file_name_byte_that_is_not_utf8_is_shown_escaped_and_the_rest_as_it_is(name, shown):
    assert readable(name) == shown
    assert readable(name).encode("utf-8")  # what the CSV and stderr can take


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
    assert (tmp_path / "real.csv").read_text().splitlines() == [",".join(COLUMNS), "a.jpg,x,X,1.000000,False,False,,,,"]
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
