"""fish_classifier/layout.py is the one home of the pipeline's paths: no stage or package module spells one, and
dvc.yaml lists, for each stage, the layout paths its code uses, so that DVC sees what the stage reads and writes."""

import ast
from pathlib import Path, PurePosixPath

import pytest
import yaml
from support import REPO_ROOT
from support.imports import imports

from fish_classifier import layout

PIPELINE_ROOTS = ("data/", "models/", "metrics/")
STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def path_literals(path: Path) -> list[str]:
    """The strings in `path`'s code (docstrings aside) that spell a pipeline path, e.g. "data/manifest.csv"."""
    tree = ast.parse(path.read_text())
    # Docstrings, and the pieces of an f-string, which is read whole below.
    skipped = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    skipped |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    texts = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped]
    texts += ["".join(part.value for part in node.values if isinstance(part, ast.Constant))
              for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    return [text for text in texts if text.startswith(PIPELINE_ROOTS)]


def layout_names(path: Path) -> set[str]:
    """The names `path` imports from fish_classifier.layout."""
    return {alias.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "fish_classifier.layout" for alias in node.names}


def stage_paths(stage: dict) -> set[PurePosixPath]:
    """Every path a dvc.yaml stage lists as a dep or an output (outs, metrics, plots)."""
    entries = [*stage.get("deps", []), *(entry for key in ("outs", "metrics", "plots") for entry in stage.get(key, []))]
    return {PurePosixPath(next(iter(entry)) if isinstance(entry, dict) else entry) for entry in entries}


def covered(path: PurePosixPath, listed: set[PurePosixPath]) -> bool:
    """`path` is listed, lies in a listed folder, or is the folder of listed paths (data/feedback's three parts)."""
    return any(path == entry or entry in path.parents or path in entry.parents for entry in listed)


def test_layout_paths_are_relative_to_the_repository_and_named_once():
    paths = {name: value for name, value in vars(layout).items() if isinstance(value, Path)}
    assert not [name for name, value in paths.items() if value.is_absolute() or not str(value).startswith(PIPELINE_ROOTS)]
    spelled = [value.as_posix() for value in paths.values()]
    assert len(spelled) == len(set(spelled)), sorted(p for p in spelled if spelled.count(p) > 1)
    assert layout.composite_set("cnn") == Path("data/composite_sets/cnn.csv")
    assert layout.model_dir("cnn") / layout.MODEL_FILE == Path("models/zoo/cnn/model.keras")


def test_no_stage_or_package_module_spells_a_pipeline_path():
    files = [*(REPO_ROOT / "stages").glob("*.py"), *(REPO_ROOT / "fish_classifier").rglob("*.py")]
    found = {file.relative_to(REPO_ROOT).as_posix(): path_literals(file) for file in files if file.name != "layout.py"}
    assert {file: literals for file, literals in found.items() if literals} == {}


def test_path_literals_finds_code_strings_and_f_strings_but_not_docstrings(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text('"""Reads data/manifest.csv."""\nA = "data/classes.json"\nB = f"models/zoo/{A}"\nC = "dat"\n')
    assert path_literals(script) == ["data/classes.json", "models/zoo/"]


# Layout paths a package module reads for a stage, as a default the stage script does not name.
PACKAGE_READS = {"select": {"OUTLIERS_MANIFEST"}}  # bundle_detector.read_outlier_pool()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_yaml_lists_every_layout_path_a_stage_uses(name):
    """The layout names the stage script imports, each in the stage's deps or outputs; a function of a model's name
    (model_dir) is read for dvc.yaml's `${item}`."""
    stage = STAGES[name].get("do", STAGES[name])
    used = layout_names(REPO_ROOT / stage["cmd"].split()[1]) | PACKAGE_READS.get(name, set())
    values = {attr: getattr(layout, attr) for attr in used}
    paths = {attr: value("${item}") if callable(value) else value for attr, value in values.items()}
    paths = {attr: PurePosixPath(Path(value).as_posix()) for attr, value in paths.items() if isinstance(value, Path)}
    assert paths, f"{name} uses no layout path"
    listed = stage_paths(stage)
    assert {attr: str(path) for attr, path in paths.items() if not covered(path, listed)} == {}



def test_package_reads_are_made_by_the_modules_that_stage_imports():
    for name, attrs in PACKAGE_READS.items():
        script = REPO_ROOT / STAGES[name]["cmd"].split()[1]
        modules = {REPO_ROOT / f"{module.replace('.', '/')}.py" for module in imports(script)}
        assert attrs <= set().union(*(layout_names(path) for path in modules if path.is_file())), name
