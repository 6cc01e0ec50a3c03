"""The store's records: a mark outside the bundle's species or with a bad version or id is refused by name, and a
row reads back as a Record in UTC."""

from datetime import datetime, timezone

import pytest

from fish_classifier.feedback.schema import (
    NOT_FISH,
    FeedbackError,
    ModelAnswer,
    Record,
    check_mark,
    check_status,
    new_record_id,
    record_from_row,
)

SPECIES = ["animal fish", "animal fish bass", "fish sea_food red_mullet"]
ANSWER = ModelAnswer("animal fish bass", 0.8125, False, 2.5)


def test_a_mark_of_a_species_or_of_no_fish_passes():
    check_mark("animal fish", ANSWER, "v1", new_record_id(), SPECIES)
    check_mark(NOT_FISH, ModelAnswer("animal fish", 1, True, None), "v1", new_record_id(), SPECIES)
    assert len({new_record_id() for _ in range(100)}) == 100


@pytest.mark.parametrize(("label", "species", "message"), [
    ("tuna", SPECIES, "label 'tuna' is not a species; expected one of: animal fish, animal fish bass, "
                      "fish sea_food red_mullet, not-fish"),
    ("animal fish", [], "no species given; pass the deploy bundle's labels as species="),
    ("not-fish", ["not-fish", "animal fish bass"], "'not-fish' is a species of the bundle, and it is the store's "
                                                   "label for no fish"),
])
def test_a_label_that_is_not_a_species_is_refused(label, species, message):
    with pytest.raises(FeedbackError) as refused:
        check_mark(label, ANSWER, "v1", new_record_id(), species)
    assert str(refused.value) == message


@pytest.mark.parametrize(("model", "version", "record_id", "message"), [
    (ModelAnswer("tuna", 0.5, False, None), "v1", "0" * 32, "the model's label 'tuna' is not a species"),
    (ModelAnswer("animal fish", 1.5, False, None), "v1", "0" * 32, "confidence 1.5 is not a number between 0 and 1"),
    (ModelAnswer("animal fish", 0.5, True, float("nan")), "v1", "0" * 32, "unknown score nan is not a finite number"),
    ("animal fish", "v1", "0" * 32, "model must be a ModelAnswer, got str"),
    (ANSWER, " ", "0" * 32, "bundle_version is empty"),
    (ANSWER, "v1", "retry-1", "record id 'retry-1' is not 32 lowercase hex digits; make one with new_record_id()"),
    (ANSWER, "v1", "A" * 32, "record id 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' is not 32 lowercase hex digits"),
])
def test_a_bad_model_answer_version_or_id_is_refused(model, version, record_id, message):
    with pytest.raises(FeedbackError, match=message):
        check_mark("animal fish", model, version, record_id, SPECIES)


def test_a_status_is_one_of_the_three():
    for status in ("new", "accepted", "rejected"):
        check_status(status)
    with pytest.raises(FeedbackError, match="status 'done' is not one of: new, accepted, rejected"):
        check_status("done")


def test_a_row_reads_back_as_a_record_in_utc():
    row = {"id": "a" * 32, "photo_sha256": "b" * 64, "label": NOT_FISH, "model_label": "animal fish",
           "model_confidence": 0.25, "model_unknown": 1, "model_unknown_score": None, "bundle_version": "v1",
           "created_at": datetime(2026, 1, 2, 3, 4, 5), "status": "new"}  # SQLite gives naive datetimes back
    record = record_from_row(row)
    assert record == Record("a" * 32, "b" * 64, NOT_FISH, ModelAnswer("animal fish", 0.25, True, None), "v1",
                            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "new")
    assert record.model.unknown is True
    tokyo = datetime.fromisoformat("2026-01-02T12:04:05+09:00")
    assert record_from_row({**row, "created_at": tokyo}).created_at == record.created_at
    assert record_from_row({**row, "created_at": tokyo}).created_at.tzinfo == timezone.utc


def test_a_model_answer_is_what_a_prediction_said_with_no_detector_score_as_none():
    from fish_classifier.serving.prediction_row import Prediction

    said = Prediction(source="a.jpg", label="animal fish", display_name="Animal fish", confidence=0.8,
                      is_unknown=True, unknown_score=12.5)
    assert ModelAnswer.of(said) == ModelAnswer("animal fish", 0.8, True, 12.5)
    no_detector = Prediction(source="b.jpg", label="animal fish", display_name="Animal fish", confidence=0.4)
    assert ModelAnswer.of(no_detector).unknown_score is None
