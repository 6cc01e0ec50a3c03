"""Shared fixtures: tiny synthetic image trees and dataset zips, built in the test's tmp_path."""

import functools
import http.server
import os
import threading

import pytest

# TensorFlow's C++ start-up chatter buries test output; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from support.synthetic_images import write_dataset_zip, write_image_tree


@pytest.fixture
def make_image_tree(tmp_path):
    """make_image_tree(root=tmp_path/"raw", classes=..., counts={"train": 3, ...}, extra={path: bytes}) -> root."""

    def make(root=None, **kwargs):
        return write_image_tree(root or tmp_path / "raw", **kwargs)

    return make


@pytest.fixture
def make_dataset_zip(tmp_path):
    """make_dataset_zip(path=tmp_path/"Dataset.zip", classes=..., counts=..., prefix=..., extra=...) -> path."""

    def make(path=None, **kwargs):
        return write_dataset_zip(path or tmp_path / "Dataset.zip", **kwargs)

    return make


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL and that folder."""
    www = tmp_path / "www"
    www.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=www))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", www
    server.shutdown()
    server.server_close()
