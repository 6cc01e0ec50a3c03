"""What the tests share: tiny synthetic photos, datasets, models and bundles, the app's harness, and a
throwaway copy of this repository to run the real pipeline in. Nothing here is a test."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
