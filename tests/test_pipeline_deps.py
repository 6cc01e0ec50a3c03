"""dvc.yaml lists, for each stage, exactly the package modules its script imports, so a code change re-runs what it should."""

import ast
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# Kept out on purpose (see dvc.yaml): editing them must not re-download the dataset.
NOT_DEPS = {"download": {"fish_classifier/params.py"}}


def package_imports(script: Path, found: set[str] | None = None) -> set[str]:
    """The fish_classifier modules `script` imports, directly or through other package modules, at any depth."""
    found = set() if found is None else found
    for node in ast.walk(ast.parse(script.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            module = name.replace(".", "/") + ".py"
            if name.startswith("fish_classifier.") and (REPO_ROOT / module).is_file() and module not in found:
                found.add(module)
                package_imports(REPO_ROOT / module, found)
    return found


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
