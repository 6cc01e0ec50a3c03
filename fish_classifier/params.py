"""Reading `params.yaml`, the one home of every knob."""

from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)
