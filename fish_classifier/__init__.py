"""Fish-species image classification: data preparation, model zoo, training, evaluation and serving."""

__version__ = "0.1.0"
