import pandas as pd
from support.fixtures_models import CLASSES, TintBackend, write_tinted_images

from fish_classifier.evaluation.predictions import predict_split


def test_predict_split_scores_the_split_originals_with_labels_in_classes_order(tmp_path):
    written = write_tinted_images(tmp_path, per_class=2)
    manifest = pd.DataFrame(
        {
            "path": [path for path, _ in written],
            "label": [CLASSES[index]["label"] for _, index in written],
            "split": ["test", "val"] * 3,
            "augmented": [False, False, False, False, True, False],
        }
    )

    test = predict_split(TintBackend(), manifest, "test", CLASSES, batch_size=1, desc="test")

    # Rows 0 and 2 (blue, green); row 4 (red) is an augmented copy and never scored.
    assert test.rows["path"].tolist() == [written[0][0], written[2][0]]
    assert test.y_true.tolist() == [0, 1]
    assert test.probabilities.shape == (2, 3)
    assert test.probabilities.argmax(axis=1).tolist() == [0, 1]
    assert test.seconds > 0
