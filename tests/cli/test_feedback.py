"""`fish-classifier feedback list|accept|reject|export` on a tiny SQLite store."""

import io
import re

import pytest
from PIL import Image
from support.synthetic_images import noise_image

from fish_classifier.cli.main import main
from fish_classifier.feedback.store import NOT_FISH, URL_ENV, FeedbackStore, ModelAnswer

SPECIES = ("animal fish", "animal fish bass", "fish sea_food red_mullet")


def photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    noise_image((48, 32), seed).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path):
    """A store of three records: a bass the model called a mullet, a not-fish, a photo the model called unknown."""
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    with FeedbackStore(url) as store:
        store.add(photo(1), "animal fish bass", ModelAnswer("fish sea_food red_mullet", 0.91, False, 1.2), "v1",
                  species=SPECIES)
        store.add(photo(2), NOT_FISH, ModelAnswer("animal fish", 0.55, False, 3.0), "v1", species=SPECIES)
        store.add(photo(3), "animal fish", ModelAnswer("animal fish bass", 0.42, True, 9.5), "v1", species=SPECIES)
        yield store


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_a_table_and_draws_a_contact_sheet(store, capsys, tmp_path):
    bass, not_fish, unknown = store.records()

    code, out, err = run(capsys, "feedback", "list", "--db", store.url, "--sheet", str(tmp_path / "sheets" / "new.png"))

    assert code == 0
    header, *rows, total = [re.split(r"\s{2,}", line) for line in out.splitlines()]
    assert header == ["id", "time (UTC)", "label", "model said", "confidence", "status"]
    assert rows == [
        [bass.id[:12], bass.created_at.strftime("%Y-%m-%d %H:%M"), "animal fish bass", "fish sea_food red_mullet",
         "0.91", "new"],
        [not_fish.id[:12], not_fish.created_at.strftime("%Y-%m-%d %H:%M"), "not-fish", "animal fish", "0.55", "new"],
        [unknown.id[:12], unknown.created_at.strftime("%Y-%m-%d %H:%M"), "animal fish",
         "unknown (closest animal fish bass)", "0.42", "new"],
    ]
    assert total == ["3 records"]
    sheet = Image.open(tmp_path / "sheets" / "new.png")
    assert sheet.info["Title"] == "Feedback: 3 records"
    assert "not-fish\nmodel: animal fish 0.55\n" + not_fish.id[:12] in sheet.info["Description"]
    assert f"wrote 3 of 3 photos to {tmp_path / 'sheets' / 'new.png'}" in err


def test_accept_and_reject_by_id_prefix_or_all_new(store, capsys):
    bass, not_fish, unknown = store.records()

    assert run(capsys, "feedback", "accept", "--db", store.url, bass.id[:12], not_fish.id)[:2] == (0, "2 records accepted\n")
    code, out, _ = run(capsys, "feedback", "list", "--db", store.url, "--status", "new")
    assert code == 0 and out.splitlines()[1].startswith(unknown.id[:12]) and out.endswith("1 record\n")
    assert run(capsys, "feedback", "reject", "--db", store.url, "--all-new")[:2] == (0, "1 record rejected\n")
    assert [r.status for r in store.records()] == ["accepted", "accepted", "rejected"]


def test_export_writes_the_layout_the_pipeline_reads(store, capsys, tmp_path):
    bass, not_fish, unknown = store.records()
    store.set_status([bass.id, not_fish.id], "accepted")
    out_dir = tmp_path / "export"

    code, out, _ = run(capsys, "feedback", "export", "--db", store.url, str(out_dir))

    assert code == 0
    assert out == f"exported 2 photos (2 accepted records) to {out_dir}: animal fish bass 1, not-fish 1\n"
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.jpg")) == [
        f"animal fish bass/{bass.photo_sha256}.jpg", f"not-fish/{not_fish.photo_sha256}.jpg"]


def test_the_store_comes_from_db_then_the_environment_then_the_default(store, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(URL_ENV, store.url)
    assert run(capsys, "feedback", "list")[1].endswith("3 records\n")

    monkeypatch.delenv(URL_ENV)
    code, out, _ = run(capsys, "feedback", "list")
    assert code == 0 and out.endswith("0 records\n")
    assert (tmp_path / "feedback" / "feedback.db").is_file()  # sqlite:///feedback/feedback.db, from here


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["accept", "0123456789ab"], 2, "no feedback record 0123456789ab; `fish-classifier feedback list` shows the ids"),
    (["accept", "abc"], 2, "record id 'abc' is too short; give at least 6 characters"),
    (["reject"], 2, "give record ids or --all-new, not both and not neither"),
    (["export", "{tmp}"], 2, "exists and is not an earlier feedback export"),
    (["list", "--db", "nosuch://"], 2, "the feedback store URL 'nosuch://' names no database SQLAlchemy can use"),
    (["list", "--db", "postgresql://reviewer:hunter2@127.0.0.1:1/feedback"], 1,
     "cannot open the feedback store postgresql://reviewer:***@127.0.0.1:1/feedback: "),
    (["list", "--db", "sqlite:///{tmp}/feedback.db/inside/store.db"], 1,
     "cannot create the folder of the feedback store sqlite:///"),
])
def test_errors_are_one_line_with_the_exit_code(store, capsys, tmp_path, argv, code, message):
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    if "--db" not in argv:
        argv += ["--db", store.url]

    got, out, err = run(capsys, "feedback", *argv)

    assert got == code
    assert err.startswith("fish-classifier: error: ") and message in err
    assert err.count("\n") == 1 and "hunter2" not in err
    assert [r.status for r in store.records()] == ["new", "new", "new"]  # nothing changed
