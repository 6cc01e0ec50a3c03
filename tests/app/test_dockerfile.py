"""The serving image's Dockerfile, read as text (tests/app/test_docker_container.py builds and runs it)."""

import re

from support import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def test_the_default_base_image_is_pinned_by_digest():
    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", default), default


def test_every_stage_starts_from_the_base_image_argument():
    # So that CI's locally built base (--build-arg BASE_IMAGE=...) replaces Docker Hub's in both stages.
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
