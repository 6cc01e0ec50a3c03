"""The bench/ scripts, loaded as modules for their tests (bench/ is a folder of scripts, not a package)."""

import importlib.util

from support import REPO_ROOT


def load_bench(name: str):
    """bench/<name>.py as a module, its `if __name__ == "__main__"` part not run."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
