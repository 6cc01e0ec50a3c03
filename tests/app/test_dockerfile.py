"""The serving image's Dockerfile, read as text (tests/app/test_docker_container.py builds and runs it)."""

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from support import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def test_the_default_base_image_is_pinned_by_digest():
    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default), default


def test_every_stage_starts_from_the_base_image_argument():
    # So that CI's locally built base (--build-arg BASE_IMAGE=...) replaces Docker Hub's in both stages.
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"]


def test_the_image_installs_the_app_requirements_under_pinned_constraints():
    # Both install commands (PyPI and the offline wheelhouse) take the constraints file.
    installs = re.findall(r"pip install [^;\n]*", DOCKERFILE)
    assert len(installs) == 2 and all("-r /build/requirements.txt -c /build/constraints.txt" in i for i in installs)


def test_the_image_keeps_glibc_to_two_heaps_so_that_memory_freed_after_a_batch_goes_back():
    # One heap per thread otherwise, and Streamlit runs each browser session on a thread of its own.
    [env] = re.findall(r"^ENV (?:.*\\\n)*.*$", DOCKERFILE.split("FROM ${BASE_IMAGE}\n")[-1], flags=re.MULTILINE)
    assert re.search(r"\bMALLOC_ARENA_MAX=2\b", env), env


def test_the_feedback_store_is_a_sqlite_file_on_a_volume_the_apps_user_owns():
    final = DOCKERFILE.split("FROM ${BASE_IMAGE}\n")[-1]
    [env] = re.findall(r"^ENV (?:.*\\\n)*.*$", final, flags=re.MULTILINE)
    assert re.search(r"\bFISH_FEEDBACK_URL=sqlite:////data/feedback/feedback\.db\b", env), env
    assert re.findall(r"^VOLUME (.+)$", final, flags=re.MULTILINE) == ["/data/feedback"]
    # Made and handed to the app's user before the VOLUME line: a fresh volume starts with that owner.
    assert re.search(r"chown fish:fish /data/feedback\n(?:.*\n)*VOLUME /data/feedback", final)
    assert re.search(r"^USER fish$", final, flags=re.MULTILINE)


def test_the_constraints_pin_every_requirement_within_its_range():
    requirements = [Requirement(line) for line in _lines(REPO_ROOT / "app" / "requirements.txt")]
    pins = {}
    for line in _lines(REPO_ROOT / "app" / "constraints.txt"):
        name, version = line.split("==")
        pins[canonicalize_name(name)] = Version(version)
    for requirement in requirements:
        pinned = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pinned), (requirement, pinned)
    assert len(pins) > len(requirements)  # and what they pull in


def _lines(path):
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]
