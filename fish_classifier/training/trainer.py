"""Training one model of the zoo: `train_model` sets up the strategy, the seed and the precision, then hands the
fit to the model's recipe, `from_scratch.train_custom_cnn` for a model trained from scratch, `transfer.train_transfer`
(cached-feature transfer learning) for an ImageNet backbone."""

import keras

from fish_classifier.data.augment import Augmentation
from fish_classifier.training.from_scratch import train_custom_cnn
from fish_classifier.training.fit import choose_strategy, class_weights, configure_precision
from fish_classifier.training.pixels import TrainingData
from fish_classifier.training.settings import CnnSettings, TrainSettings, model_section
from fish_classifier.training.transfer import train_transfer


def train_model(name: str, data: TrainingData, settings: TrainSettings, seed: int, callbacks=(),
                augmentation: Augmentation | None = None) -> keras.Model:
    """Train model `name` with its `settings` (params.yaml's `train`, read by `TrainSettings.for_model(name)`).

    `augmentation` (params.yaml's `augment` ranges) makes a backbone's `augmented_views`; the CNN has its own
    (`train.cnn.augment_ranges`).
    """
    if not isinstance(settings.model, model_section(name)):
        raise ValueError(f"the settings of train.{name} are {type(settings.model).__name__}; read them with "
                         f"TrainSettings.for_model({name!r})")
    # First: MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    strategy = choose_strategy(settings.strategy)
    keras.utils.set_random_seed(seed)
    configure_precision(settings.mixed_precision)
    fit_options = {
        "batch_size": settings.batch_size,
        "class_weight": class_weights(data.train_labels, data.num_classes) if settings.class_weight else None,
        "callbacks": list(callbacks),
        "verbose": 2,
    }
    if isinstance(settings.model, CnnSettings):
        return train_custom_cnn(name, data, settings.model, strategy, fit_options)
    return train_transfer(name, data, settings.model, strategy, fit_options, settings.frozen_pass,
                          augmentation=augmentation, seed=seed)
