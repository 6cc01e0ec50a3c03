"""What params.yaml's `train` holds, as typed, checked objects: the models (`TrainedModels`, each name checked
against the zoo, the one check of a model name), the keys all models share, and each model's own section, a
`CnnSettings` for a model the zoo trains from scratch, a `BackboneSettings` for an ImageNet backbone."""

import functools
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, create_model, model_validator

from fish_classifier.data.augment import Augmentation
from fish_classifier.model.zoo import zoo_model
from fish_classifier.params import Flag, Rule, Section, check_params, checked_by, choice, integer, number, refuse

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
FROZEN_PASS_RUNTIMES = ("auto", "litert", "keras")  # auto: LiteRT on a CPU, Keras when a GPU is visible
LR_SCHEDULES = ("constant", "cosine")  # train.cnn.lr_schedule and each backbone's fine_tune_schedule

Fraction = number(ge=0, lt=1)  # a dropout rate, a label smoothing
# A model of the zoo: `zoo_model` refuses any other name, naming it and the known ones (stage arguments alike).
ModelName = Annotated[str, Field(strict=True), checked_by(zoo_model)]


def _weights_exist(weights: str) -> bool:
    return weights == "imagenet" or weights.lower() == "none" or Path(weights).is_file()


class CnnSettings(Section):
    """params.yaml's `train.cnn`: the custom CNN, trained from scratch."""

    image_size: integer(ge=1)  # and at least 2 ** len(filters), checked below
    filters: Annotated[list[Annotated[int, Field(strict=True, ge=1)]], Field(min_length=1),
                       Rule("a non-empty list of integers >= 1 (one conv block each)")]
    convs_per_block: integer(ge=1)
    dropout: Fraction
    epochs: integer(ge=1)
    lr: number(gt=0)
    lr_schedule: choice(*LR_SCHEDULES)
    patience: integer(ge=0)
    augment: Flag  # on-the-fly random changes of each batch, within augment_ranges (see cnn_augmenter)
    # Its own ranges: milder than the augment stage's, which makes whole new photos of the rare classes.
    augment_ranges: Augmentation
    label_smoothing: Fraction
    composites: Flag  # also train on data/composited: the studio fish put onto other backgrounds

    @model_validator(mode="after")
    def _image_survives_the_pooling(self):
        # Each block halves the image (MaxPooling2D): fewer than one pixel left is a Keras error at build time.
        if self.image_size < 2 ** len(self.filters):
            raise refuse("image_size", self.image_size, f"an integer >= {2 ** len(self.filters)} with "
                         f"{len(self.filters)} filters (each conv block halves the image)")
        return self


class BackboneSettings(Section):
    """params.yaml's `train.<backbone>`: transfer learning from an ImageNet backbone (see `transfer`)."""

    weights: Annotated[str, Field(strict=True),
                       Rule("imagenet, none or the path of an existing .h5 weights file", holds=_weights_exist)]
    head_epochs: integer(ge=1)
    head_lr: number(gt=0)
    fine_tune_layers: integer(ge=0)  # 0, or fine_tune_epochs 0: no phase 2
    fine_tune_epochs: integer(ge=0)
    fine_tune_lr: number(gt=0)
    fine_tune_schedule: choice(*LR_SCHEDULES)
    dropout: Fraction
    patience: integer(ge=0)
    mirror_train: Flag
    augmented_views: integer(ge=0)
    label_smoothing: Fraction
    mirror_average: Flag
    composites: Flag  # also train on data/composited: the studio fish put onto other backgrounds


class TrainedModels(Section):
    """The part of params.yaml's `train` that select reads: `models`, the models trained and evaluated."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # each model's own settings are train's business

    models: list[ModelName]

    @model_validator(mode="after")
    def _some_and_distinct(self):
        if not self.models or len(set(self.models)) != len(self.models):
            raise refuse("models", self.models, "a non-empty list of distinct model names")
        return self


class TrainSettings(Section):
    """What training one model reads from params.yaml's `train`: the keys all models share, and the model's own
    section as `model` (`train.<name>`, a CnnSettings or a BackboneSettings). Read it with `for_model`."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # `models` and the other models' sections

    strategy: choice(*STRATEGIES)
    mixed_precision: Flag
    frozen_pass: choice(*FROZEN_PASS_RUNTIMES)
    batch_size: integer(ge=1)
    class_weight: Flag
    model: CnnSettings | BackboneSettings

    @staticmethod
    @functools.cache
    def for_model(name: str) -> type["TrainSettings"]:
        """The schema of `train` for model `name`: its `name` section is read as `model`."""
        section = model_section(name)
        return create_model(f"TrainSettings_{name}", __base__=TrainSettings,
                            model=(section, Field(validation_alias=name)))

    @classmethod
    def from_params(cls, train_params: dict, name: str) -> "TrainSettings":
        return check_params(cls.for_model(name), train_params, "train")


def model_section(name: str) -> type[CnnSettings | BackboneSettings]:
    """The schema of `train.<name>`, as the zoo's entry for model `name` says (an unknown name is refused there)."""
    return CnnSettings if zoo_model(name).from_scratch else BackboneSettings
