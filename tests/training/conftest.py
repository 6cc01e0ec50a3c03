"""The training tests' shared data: six photos a class, told apart by colour alone."""

import pytest
from support.training_data import COLOURS, write_colour_images

from fish_classifier.data.manifest import label_indices
from fish_classifier.training.pixels import TrainingData


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colours")
    rows = write_colour_images(folder)
    classes = [{"label": label, "display": label.title()} for label in sorted(COLOURS)]
    paths = [path for path, _ in rows]
    labels = label_indices([label for _, label in rows], classes)
    return TrainingData(classes, paths, labels, paths, labels)
