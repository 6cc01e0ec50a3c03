import pytest
from support.model_metrics import model_scores

from fish_classifier.evaluation.selection import rank_models


def test_ranks_by_the_chosen_metric_first():
    metrics = {"slow_good": model_scores(0.95, 0.90, 10), "fast_worse": model_scores(0.80, 0.99, 500)}
    assert rank_models(metrics, "macro_f1") == ["slow_good", "fast_worse"]
    assert rank_models(metrics, "accuracy") == ["fast_worse", "slow_good"]


def test_a_tie_on_the_metric_goes_to_the_more_accurate_model():
    metrics = {"a": model_scores(0.9, 0.91, 500), "b": model_scores(0.9, 0.93, 10)}
    assert rank_models(metrics, "macro_f1") == ["b", "a"]


def test_a_tie_on_metric_and_accuracy_goes_to_the_faster_model():
    metrics = {"slow": model_scores(0.9, 0.93, 10), "fast": model_scores(0.9, 0.93, 80),
               "worse": model_scores(0.5, 0.99, 999)}
    assert rank_models(metrics, "macro_f1") == ["fast", "slow", "worse"]


def test_the_choice_never_reads_the_testmodel_scores():
    metrics = {"best_on_val": model_scores(0.95, 0.95, 10, test=(0.70, 0.70)),
               "best_on_test": model_scores(0.90, 0.90, 10, test=(0.99, 0.99))}
    assert rank_models(metrics, "macro_f1") == ["best_on_val", "best_on_test"]
    for scores in metrics.values():  # and it needs none of them
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "test_clean"):
            del scores[key]
    assert rank_models(metrics, "macro_f1") == ["best_on_val", "best_on_test"]


def test_metrics_without_validation_scores_are_refused_by_name():
    scores = model_scores(0.9, 0.9, 1)
    del scores["val"]
    with pytest.raises(ValueError, match="metrics of model 'old' lack val.macro_f1, val.accuracy; run its evaluate"):
        rank_models({"old": scores}, "macro_f1")


def test_an_unknown_metric_names_the_allowed_ones():
    allowed = "accuracy, macro_precision, macro_recall, macro_f1"
    with pytest.raises(ValueError, match=f"unknown select.metric 'f1', expected one of: {allowed}"):
        rank_models({"a": model_scores(0.9, 0.9, 1)}, "f1")
