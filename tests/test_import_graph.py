"""The package's floor plan, read from its imports with `ast`: no circles, serving apart from training and
evaluation, no TensorFlow or DVC on the serving path, and a Docker image holding exactly that path."""

import re
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter

import pytest
from support import REPO_ROOT
from support.imports import import_graph, imports, module_file, reachable

# What the serving image has no room for, and the serving path must never import (app/requirements.txt).
NOT_IN_THE_IMAGE = ("tensorflow", "keras", "dvc", "dvclive", "sklearn", "scipy", "pydantic", "yaml", "matplotlib")


def test_the_package_has_no_import_circle():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_serving_imports_nothing_from_training_evaluation_or_the_command_line():
    graph = import_graph()
    serving = {module for module in graph if module.startswith("fish_classifier.serving")}
    # Directly or through a shared module.
    leaks = {m for m in reachable(graph, serving) if m.split(".")[1] in ("training", "evaluation", "cli", "data")}
    assert not leaks, sorted(leaks)


def test_metrics_depend_on_neither_inference_nor_the_export():
    graph = import_graph()
    assert not reachable(graph, {"fish_classifier.evaluation.metrics"}) & {
        "fish_classifier.serving.inference", "fish_classifier.serving.predictor", "fish_classifier.serving.export"}


def serving_path() -> set[str]:
    """The modules the app loads when it starts: module-level imports only, from app/app.py and the app's own
    modules beside it (app/feedback.py, ...) down."""
    graph = import_graph(lazy=False)
    start = set().union(*(imports(path, lazy=False) for path in (REPO_ROOT / "app").glob("*.py")))
    modules = reachable(graph, start)
    return modules | {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 1)}  # packages


def test_the_serving_path_imports_no_tensorflow_dvc_or_training_libraries():
    modules = sorted(m for m in serving_path() if m != "fish_classifier")
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            f"print(sorted(n for n in {NOT_IN_THE_IMAGE!r} if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "fish_classifier.serving.predictor" in modules
    assert result.stdout.strip() == "[]", result.stdout


def test_the_docker_image_copies_exactly_the_serving_path():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    copied = set()
    for line in re.findall(r"^COPY (?!--)(.+)$", dockerfile, flags=re.MULTILINE):
        *sources, _ = line.split()
        copied.update(s for s in sources if s.startswith("fish_classifier"))
    expected = {module_file(m) for m in serving_path()}
    assert copied == expected, (sorted(copied - expected), sorted(expected - copied))
