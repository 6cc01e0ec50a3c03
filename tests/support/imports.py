"""The package's import graph, read with `ast`: which fish_classifier modules a file imports, and what they reach."""

import ast
from pathlib import Path

from support import REPO_ROOT

PACKAGE = REPO_ROOT / "fish_classifier"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> str:
    """The repository path of module or package `name`, e.g. fish_classifier/serving/__init__.py."""
    path = name.replace(".", "/")
    return f"{path}.py" if (REPO_ROOT / f"{path}.py").is_file() else f"{path}/__init__.py"


def imports(path: Path, *, lazy: bool = True) -> set[str]:
    """The fish_classifier modules `path` imports (with `lazy`, also those imported inside functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree) if lazy else tree.body:
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(name for name in names if name.startswith("fish_classifier") and _is_module(name))
    return found


def import_graph(*, lazy: bool = True) -> dict[str, set[str]]:
    return {module_name(path): imports(path, lazy=lazy) for path in PACKAGE.rglob("*.py")}


def reachable(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def _is_module(name: str) -> bool:
    path = REPO_ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
