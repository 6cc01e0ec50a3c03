"""The app's own modules (app/uploads.py, app/feedback.py) importable as `streamlit run app/app.py` has them:
from the script's folder, which Streamlit puts on sys.path."""

import sys

from support import REPO_ROOT

APP_DIR = str(REPO_ROOT / "app")
if APP_DIR not in sys.path:
    sys.path.insert(0, APP_DIR)
