from support.model_metrics import model_scores

from fish_classifier.evaluation.summary import summary, summary_markdown


def test_summary_table_lists_every_model_best_first_with_the_winner_in_bold():
    metrics = {"cnn": model_scores(0.80, 0.85, 300, ece=0.02, test=(0.78, 0.84)),
               "mobilenetv2": model_scores(0.97, 0.98, 90, ece=0.008, test=(0.96, 0.99))}
    text = summary_markdown(metrics, "macro_f1", None)
    table = text.splitlines()
    assert table[0] == ("| Model | Val macro F1 | Test accuracy | Test macro F1 | Clean test accuracy "
                        "| Clean test macro F1 | Field species right | ECE | img/s |")
    assert table[2] == "| **mobilenetv2** | 0.9700 | 0.9900 | 0.9600 | 0.9800 | 0.9500 | n/a | 0.0080 | 90.0 |"
    assert table[3] == "| cnn | 0.8000 | 0.8400 | 0.7800 | 0.8300 | 0.7700 | n/a | 0.0200 | 300.0 |"
    assert "`data.field_source` is empty" in text
    assert "Clean test: the 90 of them with no exact or near duplicate in train (10 left out" in text
    assert "`data.unknown_source` is empty), so the figures of the unknown-photo detector are skipped" in text
    assert summary(metrics, "macro_f1", 0.4, None)["ranking"] == ["mobilenetv2", "cnn"]


def test_a_detector_fitted_on_the_outlier_pool_says_so_and_that_the_pool_is_not_measured():
    figures = {"method": "relative_mahalanobis", "threshold": 1.5, "val_flag_rate": 0.01,
               "images": {"test fish": 10, "not-fish": 4}, "flagged": {"test fish": 0.0, "not-fish": 0.75},
               "auroc_test_fish_vs_not_fish": 0.9, "catch_all_labels": [], "fish_elsewhere_catch_all": None,
               "outlier_photos": 25}
    detector = {"method": "relative_mahalanobis", "outliers": "relative", "asked": "auto", "outlier_photos": 25,
                "small_px": None}
    metrics = {"m": model_scores(0.9, 0.9, 1)}
    text = summary_markdown(metrics, "macro_f1", figures, detector=detector)
    assert "Detector: relative_mahalanobis on the deploy model's embeddings, threshold 1.5" in text
    assert ("Fitted on the train fish and on 25 photos that are no fish (data/outliers: `data.outlier_source` and "
            "the users' not-fish marks), which never count in the figures") in text
    assert summary(metrics, "macro_f1", 0.4, figures, detector=detector)["detector"] == detector
    assert "kept out of the fit" not in text
    held = summary_markdown(metrics, "macro_f1", figures,
                            detector={**detector, "held_back_photos": 6, "held_back_flagged": 0.5})
    assert ("Another 6 photos of the pool were kept out of the fit (`select.unknown_held_back`): it flags 50.0% of "
            "them. That share and the validation fish are what methods and settings are chosen by") in held
    small_too = summary_markdown(metrics, "macro_f1", figures, detector={**detector, "small_px": 64})
    assert ("Fitted on the train fish (as they are and brought down to 64 px, so that a small photo is not taken for "
            "no fish) and on 25 photos that are no fish") in small_too
    assert "Small test fish" not in text
    assert "No ImageNet branch: `select.unknown_imagenet_weight` is 0, or the deploy model did not start from" in text
    imagenet = summary_markdown(metrics, "macro_f1", figures, detector={**detector, "imagenet_weight": 0.5})
    assert ("The score adds, at weight 0.5, the ImageNet head's (minus the log of its probability on ImageNet's fish "
            "and crustaceans), from a branch of the LiteRT model that shares the deploy model's frozen") in imagenet
    assert "Catch-all answers" not in imagenet
    doubt = {"rate": 0.25, "threshold": 0.0412, "labels": ["animal fish"], "test_flagged": 0.0147,
             "test_catch_all_answers": 42, "test_catch_all_flagged": 0.1429}
    doubted = summary_markdown(metrics, "macro_f1", figures,
                               detector={**detector, "imagenet_weight": 0.5, "catch_all_doubt": doubt})
    assert ("Catch-all answers (animal fish) are flagged low-confidence when the ImageNet head puts less than 0.0412 "
            "on fish that are none of the species (`select.catch_all_doubt_rate`: 25% of the validation catch-all "
            "answers): such a photo may be a named species photographed outside the studio. On the test photos it "
            "flags 14.3% of the 42 catch-all answers (1.5% of all test photos); their answers stay as they "
            "are.") in doubted
    small = summary_markdown(metrics, "macro_f1", {**figures, "images": {**figures["images"], "small test fish": 10},
                                                   "flagged": {**figures["flagged"], "small test fish": 0.1}})
    assert "| small test fish | 10 | 10.0% |" in small
    assert "Small test fish: the test fish brought down to `select.unknown_small_px` px on their longest side" in small


def test_without_photos_that_are_no_fish_the_summary_says_which_detector_it_kept_and_how_to_get_the_other():
    metrics = {"m": model_scores(0.9, 0.9, 1)}
    auto = {"method": "mahalanobis", "outliers": "ignore", "asked": "auto", "outlier_photos": 0}
    text = summary_markdown(metrics, "macro_f1", None, detector=auto)  # no unknown set: the line still shows
    assert ("Fitted on the train fish alone (Mahalanobis): the outlier pool (data/outliers) holds fewer than two "
            "photos that are no fish, so `select.unknown_outliers: auto` kept the detector without them") in text
    assert "(its default downloads Tiny ImageNet) for the relative detector" in text
    ignored = summary_markdown(metrics, "macro_f1", None, detector={**auto, "method": "knn", "asked": "ignore"})
    assert "Fitted on the train fish alone (knn, `select.unknown_outliers: ignore`): no photos that are no fish" in ignored
    assert "detector" not in summary(metrics, "macro_f1", 0.4, None)
