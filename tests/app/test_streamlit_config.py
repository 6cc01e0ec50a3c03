"""The app's Streamlit settings, .streamlit/config.toml, as Streamlit reads them from the repository root
(where `streamlit run` starts, here and in the Docker image, whose WORKDIR holds a copy of .streamlit/)."""

import logging
import os

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest
from support.app_bundles import REPO_ROOT

FAILING_SCRIPT = """
import streamlit as st
st.title("Fish species classifier")
raise RuntimeError("cannot open /srv/fish/models/deploy/secret.bin")
"""


@pytest.fixture
def repo_config():
    """Streamlit's options parsed afresh from the repository root, as `streamlit run` there would."""
    before = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        config.get_config_options(force_reparse=True)
        yield config
    finally:
        os.chdir(before)
        config.get_config_options(force_reparse=True)


def test_one_photo_of_the_largest_size_the_uploader_takes_fits_a_sessions_upload_cap(repo_config):
    import uploads  # app/uploads.py (tests/app/conftest.py puts app/ on sys.path)

    largest = repo_config.get_option("server.maxUploadSize") * 2**20  # Streamlit's megabytes
    assert largest <= uploads.SESSION_UPLOAD_MB * uploads.MB <= uploads.SERVER_UPLOAD_MB * uploads.MB


def test_error_details_are_hidden_from_users_with_a_value_streamlit_accepts(repo_config):
    assert repo_config.get_option("client.showErrorDetails") == config.ShowErrorDetailsConfigOptions.NONE


def test_an_unexpected_error_shows_a_short_notice_and_logs_the_traceback_on_the_server(repo_config, capsys, caplog):
    caplog.set_level(logging.ERROR)
    app = AppTest.from_string(FAILING_SCRIPT).run()

    [shown] = app.exception
    assert shown.message.startswith("This app has encountered an error. The original error message is redacted")
    assert "secret.bin" not in shown.message and "RuntimeError" not in shown.message
    assert shown.stack_trace == []
    server_log = capsys.readouterr().out + caplog.text  # Streamlit prints it with rich, or logs it without
    assert "Traceback" in server_log and "RuntimeError" in server_log and "secret.bin" in server_log
