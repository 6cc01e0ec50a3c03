"""A model's metrics.json as the evaluate stage writes it, with chosen scores, for the select-side tests."""


def headline_scores(f1, accuracy):
    return {"accuracy": accuracy, "macro_precision": f1, "macro_recall": f1, "macro_f1": f1}


def model_scores(f1, accuracy, speed, ece=0.01, test=None):
    """A model's metrics file with validation scores `f1` and `accuracy`. The test scores default to the
    reverse of the validation ones, so a ranking that read them would come out upside down."""
    test_f1, test_accuracy = test or (1 - f1, 1 - accuracy)
    return {
        **headline_scores(test_f1, test_accuracy),
        "val": headline_scores(f1, accuracy),
        "test_clean": {**headline_scores(test_f1 - 0.01, test_accuracy - 0.01), "images": 90, "left_out": 10},
        "test_images": 100,
        "images_per_second": speed,
        "model_size_mb": 10.0,
        "calibration": {"temperature": 1.5, "ece_before": 0.05, "ece_after": ece},
    }
