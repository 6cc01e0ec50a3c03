import os
import stat

import pytest

DEVICES = {"null": (1, 3), "full": (1, 7)}  # Linux's major, minor numbers


@pytest.fixture
def device(tmp_path):
    """device("null") -> a path to that character device which a test may hand to code that could replace it.

    As root, code that wrongly renames a file over its --out would replace /dev/null itself, for every process
    on the machine: root gets its own node of the same device in tmp_path. Anyone else gets /dev's, which
    they cannot replace."""

    def make(name: str) -> str:
        if os.geteuid() != 0:
            return f"/dev/{name}"
        node = tmp_path / "dev" / name
        node.parent.mkdir(exist_ok=True)
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(*DEVICES[name]))
        return str(node)

    return make
