"""Tests mirror the package: fish_classifier/<sub>/<module>.py has its tests in tests/<sub>/test_<module>.py
(ground floor: tests/test_<module>.py), so a reader finds a module's tests without searching."""

from collections import Counter

from support import REPO_ROOT

PACKAGE = REPO_ROOT / "fish_classifier"


def mirrored_test_files(module) -> list:
    """Where `module`'s tests may live: tests/<sub>/test_<module>.py, or tests/<sub>/test_<sub>_<module>.py where
    another module of the package has the same name (serving/export.py beside feedback/export.py): the test
    folders are not packages, so pytest cannot collect two test files of one name."""
    folder = REPO_ROOT / "tests" / module.parent.relative_to(PACKAGE)
    places = [folder / f"test_{module.stem}.py"]
    if NAMES[module.stem] > 1:
        places.append(folder / f"test_{module.parent.name}_{module.stem}.py")
    return places


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path.stem not in ("__init__", "__main__"))
NAMES = Counter(module.stem for module in MODULES)


def test_every_package_module_has_its_mirrored_test_file():
    missing = [str(mirrored_test_files(module)[0].relative_to(REPO_ROOT)) for module in MODULES
               if not any(place.is_file() for place in mirrored_test_files(module))]
    assert not missing, missing


def test_the_rule_reads_the_package_as_it_is():
    assert PACKAGE / "serving" / "predictor.py" in MODULES and PACKAGE / "params.py" in MODULES
    assert mirrored_test_files(PACKAGE / "params.py") == [REPO_ROOT / "tests" / "test_params.py"]
    assert mirrored_test_files(PACKAGE / "serving" / "export.py")[1] == (
        REPO_ROOT / "tests" / "serving" / "test_serving_export.py")
