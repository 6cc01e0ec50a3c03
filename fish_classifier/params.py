"""Reading `params.yaml`, the one home of every knob, and checking it before a stage does any work.

Each stage names the sections it reads and the schema of each (`stage_params(data=DownloadSettings)`);
the schemas live next to the code that uses their values (download.py, training.py, ...). A value that
does not fit is reported as one line naming the key, the value and what is allowed, e.g.

    train.mobilenetv2.fine_tune_epochs must be an integer >= 0, got -1

The schemas give no defaults: every key comes from params.yaml.
"""

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError, core_schema

PARAMS_FILE = Path("params.yaml")

Schema = TypeVar("Schema", bound=BaseModel)


class ParamsError(ValueError):
    """params.yaml does not fit a stage's schema: one line per problem, each naming the key, the value
    and what is allowed."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


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


# --- the vocabulary of the schemas ----------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What a value must be, in words (`an integer >= 0`): a value that does not fit gets exactly this.

    `holds` is a further check on a value of the right type (no duplicates in a list, a file that exists).
    """

    text: str
    holds: Callable[[Any], bool] | None = None

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_wrap_validator_function(self._validate, handler(source))

    def _validate(self, value, handler):
        try:
            value = handler(value)
        except ValidationError:
            raise PydanticCustomError("params", "must be {rule}", {"rule": self.text}) from None
        if self.holds is not None and not self.holds(value):
            raise PydanticCustomError("params", "must be {rule}", {"rule": self.text})
        return value


def integer(*, ge: int):
    return Annotated[int, Field(strict=True, ge=ge), Rule(f"an integer >= {ge}")]


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
           meaning: str = ""):
    """A float (an int is fine) within the bounds given; `meaning` follows the rule (` (degrees)`)."""
    low = f"({gt}" if gt is not None else f"[{ge}" if ge is not None else None
    high = f"{lt})" if lt is not None else f"{le}]" if le is not None else None
    if low and high:
        words = f"a number within {low}, {high}"
    elif low:
        words = f"a number {'>' if gt is not None else '>='} {low[1:]}"
    else:
        words = f"a number {'<' if lt is not None else '<='} {high[:-1]}"
    return Annotated[float, Field(strict=True, gt=gt, ge=ge, lt=lt, le=le), Rule(words + meaning),
                     _Finite(words.replace("a number", "a finite number", 1) + meaning)]


@dataclass(frozen=True)
class _Finite:
    """Refuses nan, inf and -inf, which YAML reads as floats (`.nan`, `.inf`), before any bound is checked.

    inf passes `> 0` and trains a model of NaNs that later stages take for a model; nan fails every bound, but
    the message should say what is wrong with it. `text` is the rule with "a finite number" in it.
    """

    text: str

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_before_validator_function(self._validate, handler(source))

    def _validate(self, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("params", "must be {rule}", {"rule": self.text})
        return value


def choice(*values: str):
    return Annotated[Literal[values], Rule(f"one of: {', '.join(values)}")]


def text(*, empty: bool, meaning: str = ""):
    """A string; `empty` says whether "" is allowed; `meaning` follows the rule (`: the file to take`)."""
    words = "a string" if empty else "a non-empty string"
    return Annotated[str, Field(strict=True, min_length=0 if empty else 1), Rule(words + meaning)]


Flag = Annotated[bool, Field(strict=True), Rule("true or false")]


def checked_by(check: Callable[[Any], Any]):
    """A value that `check` accepts; the ValueError it raises otherwise is the whole message, after the key
    (`train.models: unknown model 'resnet', expected one of: cnn, ...`). For a fact with a home of its own (the zoo's
    model names), so that params.yaml and a stage's command line refuse a value alike; see `stage_arguments`."""

    def validate(value):
        try:
            check(value)
        except ValueError as error:
            raise PydanticCustomError("params_message", "{message}", {"message": str(error)}) from None
        return value

    return AfterValidator(validate)


def refuse(key: str, value, rule: str) -> PydanticCustomError:
    """The error a section's own check across its keys raises: its `key`, holding `value`, must be `rule`."""
    return PydanticCustomError("params_key", "{key} must be {rule}", {"key": key, "value": value, "rule": rule})


class Section(BaseModel):
    """A section of params.yaml: every key required (no defaults here), none unknown, frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Base(Section):
    """params.yaml's `base`: what every stage that draws random numbers shares."""

    seed: integer(ge=0)


# --- checking ------------------------------------------------------------------------------------


def check_params(schema: type[Schema], values, key: str = "") -> Schema:
    """`values` (params.yaml's section `key`, or the whole file when `key` is empty) as a `schema` object.

    Raises ParamsError with a line for every key that does not fit.
    """
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        raise ParamsError([_problem(entry, schema, key) for entry in error.errors()]) from None


def read_params(path: str | Path = PARAMS_FILE, **sections: type[BaseModel]):
    """The `sections` a stage reads from params.yaml, each checked against its schema, as one object whose
    attributes are the sections: `read_params(data=DownloadSettings).data.source`. Raises ParamsError."""
    schema = create_model("StageParams", __base__=_StageParams,
                          **{name: (section, ...) for name, section in sections.items()})
    try:
        params = load_params(path)
    except OSError as exc:
        raise ParamsError([f"cannot read {path} ({exc.strerror or exc})"]) from None
    except yaml.YAMLError as exc:
        raise ParamsError([f"{path} is not valid YAML ({' '.join(str(exc).split())})"]) from None
    return check_params(schema, params)


def stage_arguments(doc: str, argv=None, *, model: Callable[[str], Any] | None = None) -> argparse.Namespace:
    """A stage script's command line. `--help` prints `doc` (what the stage reads and writes) and exits
    before any work. With `model`, one model name (`args.model`) that `model` accepts (the zoo's `zoo_model`, the
    check params.yaml's `train.models` gets too): a name it refuses is a usage error with its message, exit 2."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if model is not None:
        parser.add_argument("model", type=_accepted_by(model), help="a model of train.models")
    return parser.parse_args(argv)


def _accepted_by(check: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse `type`: the argument as given, once `check` accepts it; its ValueError is the usage error."""

    def accepted(value: str) -> str:
        try:
            check(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    return accepted


def stage_params(**sections: type[BaseModel]):
    """`read_params(**sections)` for a stage script's first line: a params.yaml that does not fit prints its
    problems, one line each, and exits 1 before any work starts (and with no traceback to bury them)."""
    try:
        return read_params(**sections)
    except ParamsError as error:
        sys.exit("\n".join(f"{PARAMS_FILE}: {problem}" for problem in error.problems))


class _StageParams(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # other stages' sections are theirs to check


def _problem(error: dict, schema: type[BaseModel], key: str) -> str:
    """One pydantic error as a line naming the key, the value and what is allowed."""
    loc = tuple(str(part) for part in error["loc"])
    name = ".".join(part for part in (key, *loc) if part) or str(PARAMS_FILE)
    value = error.get("input")
    kind = error["type"]
    if kind == "params":
        return f"{name} must be {error['ctx']['rule']}, got {value!r}"
    if kind == "params_message":  # the message names the value; a list's index adds nothing to it
        return f"{'.'.join(part for part in (key, *loc) if part and not part.isdigit())}: {error['ctx']['message']}"
    if kind == "params_key":
        return f"{name}.{error['ctx']['key']} must be {error['ctx']['rule']}, got {error['ctx']['value']!r}"
    if kind == "missing":
        return f"{name} is missing; it must be {_allowed(schema, loc)}"
    if kind == "extra_forbidden":
        section = ".".join(part for part in (key, *loc[:-1]) if part) or str(PARAMS_FILE)
        return (f"{name} is not a known key (a typo?), got {value!r}; the keys of {section} are: "
                + ", ".join(_keys(_section(schema, loc[:-1]))))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{name} must be {_allowed(schema, loc)}, got {value!r}"
    return f"{name}: {error['msg']}, got {value!r}"


def _field(schema: type[BaseModel], loc: tuple[str, ...]):
    """The field at `loc` inside `schema` (found by name or validation alias), or None."""
    field, model = None, schema
    for part in loc:
        fields = getattr(model, "model_fields", None) or {}
        field = next((f for name, f in fields.items() if part in (name, f.validation_alias)), None)
        if field is None:
            return None
        model = field.annotation
    return field


def _section(schema: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The schema of the section at `loc` (`schema` itself for the whole file), or None."""
    if loc:
        field = _field(schema, loc)
        schema = field.annotation if field is not None else None
    return schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None


def _allowed(schema: type[BaseModel], loc: tuple[str, ...]) -> str:
    """What the value at `loc` must be, in words: its Rule, or the keys of a section."""
    section = _section(schema, loc)
    if section is not None:
        return f"a mapping with the keys: {', '.join(_keys(section))}"
    field = _field(schema, loc)
    rules = [item.text for item in (field.metadata if field else ()) if isinstance(item, Rule)]
    return rules[0] if rules else "present"


def _keys(section: type[BaseModel] | None) -> list[str]:
    """A section's keys as params.yaml spells them."""
    fields = section.model_fields if section is not None else {}
    return [field.validation_alias if isinstance(field.validation_alias, str) else name
            for name, field in fields.items()]
