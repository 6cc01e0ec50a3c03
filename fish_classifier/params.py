"""Reading `params.yaml`, the one home of every knob."""

import re
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading exponent floats without a dot (`3e-05`) as floats, as YAML 1.2 does.

    `dvc exp run -S train.mobilenetv2.fine_tune_lr=0.00003` writes `3e-05`, which YAML 1.1 reads as a string.
    """


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_ParamsLoader)
