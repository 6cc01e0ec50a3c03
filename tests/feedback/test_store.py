"""The feedback store, each test against SQLite and a real PostgreSQL (conftest.store_url). Its parts have their
own tests: test_schema.py (the checks on a mark), test_photos.py, test_database.py and test_export.py."""

import io
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from support.synthetic_images import image_bytes, noise_image

from fish_classifier.feedback.photos import clean_photo
from fish_classifier.feedback.postgres_cluster import create_database, drop_database
from fish_classifier.feedback.store import (
    DEFAULT_URL,
    NOT_FISH,
    URL_ENV,
    FeedbackError,
    FeedbackStore,
    ModelAnswer,
    new_record_id,
    photos_table,
    store_url,
)

SPECIES = ("animal fish", "animal fish bass", "fish sea_food red_mullet")
ANSWER = ModelAnswer("animal fish bass", 0.8125, False, 2.5)


def photo(seed: int, size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    noise_image(size, seed).save(buffer, "PNG")
    return buffer.getvalue()


def photo_rows(store: FeedbackStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(photos_table)).scalar_one()


@pytest.fixture
def store(store_url):
    with FeedbackStore(store_url) as store:
        yield store


def test_a_record_round_trips_every_field(store, store_url):
    before = datetime.now(timezone.utc)
    record_id = new_record_id()
    added = store.add(photo(1), "fish sea_food red_mullet", ANSWER, "bundle-3f2a", species=SPECIES,
                      record_id=record_id)
    unknown = store.add(photo(2), NOT_FISH, ModelAnswer("animal fish", 0.4, True, None), "bundle-3f2a",
                        species=SPECIES)

    with FeedbackStore(store_url) as reopened:  # read back through a new connection, not a cache
        first, second = reopened.records()
    assert first == added and second == unknown
    assert first.id == record_id and len(second.id) == 32
    assert first.label == "fish sea_food red_mullet" and first.status == "new"
    assert first.model == ModelAnswer("animal fish bass", 0.8125, False, 2.5)
    assert second.model == ModelAnswer("animal fish", 0.4, True, None) and second.label == NOT_FISH
    assert first.bundle_version == "bundle-3f2a"
    assert first.created_at.tzinfo == timezone.utc
    assert before <= first.created_at <= second.created_at <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert first.photo_sha256 == __import__("hashlib").sha256(photo(1)).hexdigest()


def test_the_photo_kept_is_the_upload_cleaned(store):
    upload = image_bytes(size=(40, 20), format="PNG")
    record = store.add(upload, "animal fish", ANSWER, "v1", species=SPECIES)
    assert store.photo(record.photo_sha256) == clean_photo(upload, max_bytes=10**6).jpeg


def test_the_same_photo_twice_is_one_photo_with_two_records(store):
    first = store.add(photo(3), "animal fish", ANSWER, "v1", species=SPECIES)
    second = store.add(photo(3), "animal fish bass", ANSWER, "v1", species=SPECIES)
    store.add(photo(4), "animal fish", ANSWER, "v1", species=SPECIES)

    assert first.photo_sha256 == second.photo_sha256 and first.id != second.id
    assert photo_rows(store) == 2
    assert [r.label for r in store.records()] == ["animal fish", "animal fish bass", "animal fish"]


def test_the_same_record_id_twice_is_one_record(store):
    record_id = new_record_id()
    first = store.add(photo(5), "animal fish", ANSWER, "v1", species=SPECIES, record_id=record_id)
    retry = store.add(photo(5), "animal fish", ANSWER, "v1", species=SPECIES, record_id=record_id)

    assert retry == first
    assert store.records() == [first]


@pytest.mark.parametrize(("label", "species", "message"), [
    ("tuna", SPECIES, "label 'tuna' is not a species; expected one of: animal fish, animal fish bass, "
                      "fish sea_food red_mullet, not-fish"),
    ("animal fish", (), "no species given"),
    ("not-fish", ("not-fish", "animal fish bass"), "'not-fish' is a species of the bundle"),
])
def test_a_label_that_is_not_a_species_is_refused(store, label, species, message):
    with pytest.raises(FeedbackError, match=message):
        store.add(photo(6), label, ANSWER, "v1", species=species)
    assert store.records() == [] and photo_rows(store) == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"model": ModelAnswer("tuna", 0.5, False, None)}, "the model's label 'tuna' is not a species"),
    ({"model": ModelAnswer("animal fish", 1.5, False, None)}, "confidence 1.5 is not a number between 0 and 1"),
    ({"model": ModelAnswer("animal fish", 0.5, True, float("nan"))}, "unknown score nan is not a finite number"),
    ({"bundle_version": " "}, "bundle_version is empty"),
    ({"record_id": "retry-1"}, "record id 'retry-1' is not 32 lowercase hex digits"),
])
def test_a_bad_model_answer_version_or_id_is_refused(store, kwargs, message):
    args = {"model": ANSWER, "bundle_version": "v1"} | kwargs
    record_id = args.pop("record_id", None)
    with pytest.raises(FeedbackError, match=message):
        store.add(photo(6), "animal fish", args["model"], args["bundle_version"], species=SPECIES,
                  record_id=record_id)
    assert store.records() == []


def test_a_photo_that_cannot_be_kept_writes_nothing(store_url):
    with FeedbackStore(store_url, max_photo_bytes=10_000) as store:
        for upload in (b"no image at all", image_bytes(size=(64, 64), format="PNG")):
            with pytest.raises(FeedbackError, match="the photo (cannot be kept|is 12,[0-9]{3} bytes, over)"):
                store.add(upload, "animal fish", ANSWER, "v1", species=SPECIES)
        assert store.records() == [] and photo_rows(store) == 0


def test_the_record_limit_refuses_one_more(store_url):
    with FeedbackStore(store_url, max_records=2) as store:
        store.add(photo(1), "animal fish", ANSWER, "v1", species=SPECIES)
        store.add(photo(2), "animal fish", ANSWER, "v1", species=SPECIES)
        with pytest.raises(FeedbackError, match="holds 2 records, its limit"):
            store.add(photo(3), "animal fish", ANSWER, "v1", species=SPECIES)
        assert len(store.records()) == 2 and photo_rows(store) == 2


def test_review_statuses_filter_the_records_oldest_first(store):
    a, b, c = (store.add(photo(i), "animal fish", ANSWER, "v1", species=SPECIES) for i in range(3))

    assert store.set_status([a.id, c.id], "accepted") == 2
    assert store.set_status([b.id], "rejected") == 1
    assert [r.id for r in store.records("accepted")] == [a.id, c.id]
    assert [r.id for r in store.records("rejected")] == [b.id]
    assert store.records("new") == []
    with pytest.raises(FeedbackError, match=f"no feedback record {'0' * 32} in "):
        store.set_status([a.id, "0" * 32], "new")
    assert store.records("accepted")[0].status == "accepted"  # nothing changed by the refused call
    with pytest.raises(FeedbackError, match="status 'done' is not one of: new, accepted, rejected"):
        store.set_status([a.id], "done")
    with pytest.raises(FeedbackError, match=f"no photo {'f' * 64} in the feedback store"):
        store.photo("f" * 64)


def test_export_writes_label_folders_of_hashed_jpegs(store, tmp_path):
    bass = store.add(photo(1), "animal fish bass", ANSWER, "v1", species=SPECIES)
    not_fish = store.add(photo(2), NOT_FISH, ANSWER, "v1", species=SPECIES)
    first = store.add(photo(3), "animal fish", ANSWER, "v1", species=SPECIES)
    relabelled = store.add(photo(3), "fish sea_food red_mullet", ANSWER, "v1", species=SPECIES)
    rejected = store.add(photo(4), "animal fish", ANSWER, "v1", species=SPECIES)
    store.set_status([bass.id, not_fish.id, first.id, relabelled.id], "accepted")
    store.set_status([rejected.id], "rejected")
    out = tmp_path / "exported" / "feedback"

    report = store.export(out)

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted([f"animal fish bass/{bass.photo_sha256}.jpg", f"not-fish/{not_fish.photo_sha256}.jpg",
                            f"fish sea_food red_mullet/{first.photo_sha256}.jpg"])
    assert (out / "not-fish" / f"{not_fish.photo_sha256}.jpg").read_bytes() == store.photo(not_fish.photo_sha256)
    assert report == {"records": 4, "photos": 3,
                      "labels": {"animal fish bass": 1, "fish sea_food red_mullet": 1, "not-fish": 1},
                      "relabelled": [{"sha256": first.photo_sha256, "labels": ["animal fish", "fish sea_food red_mullet"],
                                      "kept": "fish sea_food red_mullet"}]}
    assert [p.name for p in out.parent.iterdir()] == ["feedback"]  # no scratch folder left beside it

    store.set_status([bass.id], "rejected")
    assert store.export(out)["photos"] == 2  # an earlier export is replaced
    assert not (out / "animal fish bass").exists()
    assert store.export(tmp_path / "rejected", status="rejected")["labels"] == {"animal fish": 1, "animal fish bass": 1}

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FeedbackError, match="notes exists and is not an earlier feedback export"):
        store.export(tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(store):
    """20 threads x 50 adds; even adds share 25 photos across threads, and every 10th add is sent twice."""
    threads, adds = 20, 50
    uploads = {key: photo(key, size=(16, 16)) for key in [*range(25), *range(1000, 1000 + threads * adds)]}
    ids = {(t, k): new_record_id() for t in range(threads) for k in range(adds)}
    errors = []

    def write(t):
        try:
            for k in range(adds):
                key = k // 2 if k % 2 == 0 else 1000 + t * adds + k
                for _ in range(2 if k % 10 == 0 else 1):  # a retried save: the same record id again
                    store.add(uploads[key], SPECIES[k % 3], ANSWER, "v1", species=SPECIES, record_id=ids[t, k])
        except Exception as exc:  # noqa: BLE001 - reported below, a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    records = store.records()
    assert len(records) == threads * adds
    assert {r.id for r in records} == set(ids.values())
    assert photo_rows(store) == 25 + threads * adds // 2


def test_the_store_url_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    assert store_url() == DEFAULT_URL == "sqlite:///feedback/feedback.db"
    monkeypatch.setenv(URL_ENV, "postgresql://app@db/feedback")
    assert store_url() == "postgresql://app@db/feedback"
    assert store_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_database_server_connection_waits_as_long_as_the_store_was_told(postgres_server):
    name = f"feedback_test_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_server, name).render_as_string(hide_password=False)
    try:
        with FeedbackStore(url, connect_timeout_s=3) as store, store.engine.connect() as conn:
            assert conn.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == "3"
    finally:
        drop_database(postgres_server, name)
