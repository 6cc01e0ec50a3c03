"""dvc.yaml lists, for each stage, exactly the package modules its script imports, so a code change re-runs what it should."""

import re
from pathlib import Path

import yaml
from support import REPO_ROOT
from support.imports import import_graph, imports, module_file, reachable

from fish_classifier.layout import METRICS_FILE, MODEL_FILE, MODEL_METRICS_DIR, VAL_CONFIDENCE_FILE, ZOO_DIR
from fish_classifier.model.zoo import MODEL_NAMES

# Kept out on purpose (see dvc.yaml): editing them must not re-download the dataset. A path of layout.py that
# download writes is an out in dvc.yaml as well (tests/test_layout.py), so moving it re-runs download all the same.
NOT_DEPS = {"download": {"fish_classifier/params.py", "fish_classifier/layout.py"}}


def package_imports(script: Path) -> set[str]:
    """The fish_classifier module files `script` imports, directly or through other package modules, at any depth."""
    modules = reachable(import_graph(), imports(script))
    return {module_file(m) for m in modules if not module_file(m).endswith("__init__.py")}


def test_package_imports_follows_imports_inside_functions(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from fish_classifier.serving.predictor import Predictor\n")
    found = package_imports(script)
    assert {"fish_classifier/serving/predictor.py", "fish_classifier/serving/bundle.py", "fish_classifier/model/preprocessing.py"} <= found
    assert "fish_classifier/training/trainer.py" not in found  # the predictor never imports training code


def test_every_stage_depends_on_exactly_the_code_it_imports():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        script = stage["cmd"].split()[1]
        code_deps = {dep for dep in stage["deps"] if dep.endswith(".py")}
        expected = ({script} | package_imports(REPO_ROOT / script)) - NOT_DEPS.get(name, set())
        assert code_deps == expected, (name, sorted(expected - code_deps), sorted(code_deps - expected))


def test_each_model_writes_into_its_own_folders_and_select_depends_on_their_parents():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    train, evaluate, select = stages["train"]["do"], stages["evaluate"]["do"], stages["select"]
    outputs = [*train["outs"], *train["plots"], *evaluate["outs"], *evaluate["metrics"], *evaluate["plots"]]
    paths = [next(iter(out)) if isinstance(out, dict) else out for out in outputs]
    assert f"{ZOO_DIR.as_posix()}/${{item}}/{MODEL_FILE}" in paths
    assert f"{MODEL_METRICS_DIR.as_posix()}/${{item}}/{METRICS_FILE}" in paths
    assert f"{MODEL_METRICS_DIR.as_posix()}/${{item}}/{VAL_CONFIDENCE_FILE}" in paths
    parents = (f"{ZOO_DIR.as_posix()}/${{item}}/", f"{MODEL_METRICS_DIR.as_posix()}/${{item}}/")
    assert all(path.startswith(parents) for path in paths), paths
    assert {ZOO_DIR.as_posix(), MODEL_METRICS_DIR.as_posix()} <= set(select["deps"])
    # No hand list of models anywhere: the model names appear in params.yaml only.
    text = (REPO_ROOT / "dvc.yaml").read_text()
    assert not [name for name in MODEL_NAMES if re.search(rf"\b{name}\b", text)]
