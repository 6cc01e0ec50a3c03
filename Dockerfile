# The app's serving image: Streamlit and the LiteRT runtime, no TensorFlow, no DVC.
#
#   dvc repro                                   # writes models/deploy, with model.tflite
#   docker build -t fish-classifier-app .
#   docker run -p 8501:8501 fish-classifier-app # then open http://localhost:8501
#   docker run -p 8501:8501 -v "$PWD/feedback:/data/feedback" fish-classifier-app   # users' marks kept on the host
#
# Build arguments:
#   BASE_IMAGE  a Debian-style image with Python 3.11 and its venv module. By default Docker Hub's
#               python:3.11-slim, pinned by digest so that a rebuild starts from the same bytes; to move
#               to a newer one on purpose, take the digest from `docker buildx imagetools inspect python:3.11-slim`.
#               CI builds one from Debian's packages with mmdebstrap (.ci/docker.sh), as Docker Hub is out of its reach.
#   WHEELHOUSE  a folder inside the build context holding the wheels of app/requirements.txt; pip then
#               installs from it alone and never reaches an index (air-gapped builds). Empty: PyPI.
ARG BASE_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${BASE_IMAGE} AS build
ARG WHEELHOUSE=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# requirements.txt says what the app needs; constraints.txt pins it and everything it pulls in (pip-compile).
COPY app/requirements.txt app/constraints.txt /build/
# Without a wheelhouse this copies the requirements file a second time: harmless, and one COPY serves both.
COPY ${WHEELHOUSE:-app/requirements.txt} /build/wheels/
# Never used here, and about 100 MB of the 800 MB budget: the packages' test suites, pyarrow's C++ headers,
# and pydeck's Jupyter widget bundle (Streamlit draws maps with its own).
RUN python3 -m venv /venv \
 && if [ -n "$WHEELHOUSE" ]; then \
        /venv/bin/pip install --no-index --find-links /build/wheels -r /build/requirements.txt -c /build/constraints.txt; \
    else \
        /venv/bin/pip install -r /build/requirements.txt -c /build/constraints.txt; \
    fi \
 && /venv/bin/pip uninstall --yes pip setuptools \
 && find /venv -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /venv/lib/python3*/site-packages/pyarrow/include /venv/lib/python3*/site-packages/pydeck/nbextension/static

FROM ${BASE_IMAGE}
# An explicit PATH: an image made by `docker import` has none to extend. MALLOC_ARENA_MAX: two glibc heaps, not one
# per thread (Streamlit runs each session on its own), so that memory freed after a batch goes back to the system.
# FISH_FEEDBACK_URL: the feedback store (docs/feedback.md), a SQLite file on the volume below, so that users' marks
# outlive the container; a postgresql://... URL puts it on a database server instead, FISH_FEEDBACK=0 switches it off.
ENV PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/srv/fish \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    FISH_FEEDBACK_URL=sqlite:////data/feedback/feedback.db
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/fish fish \
 && mkdir -p /data/feedback && chown fish:fish /data/feedback
# docker run -v "$PWD/feedback:/data/feedback" ...: a host folder must be writable by uid 10001 (the app's user).
VOLUME /data/feedback
COPY --from=build /venv /venv
WORKDIR /srv/fish
# Owned by root and read-only to the app's user. .streamlit/config.toml bounds the upload size and keeps XSRF on.
COPY .streamlit/ .streamlit/
# Only the package modules the app imports (tests/test_import_graph.py keeps this list equal to them):
# the serving seam and the few shared modules it uses, no data, model, training or evaluation code.
COPY fish_classifier/__init__.py fish_classifier/cpus.py fish_classifier/images.py fish_classifier/layout.py \
     fish_classifier/
COPY fish_classifier/serving/__init__.py fish_classifier/serving/bundle.py fish_classifier/serving/bundle_schema.py \
     fish_classifier/serving/catch_all.py fish_classifier/serving/inference.py fish_classifier/serving/litert.py \
     fish_classifier/serving/prediction_row.py fish_classifier/serving/predictor.py fish_classifier/serving/spreadsheet.py \
     fish_classifier/serving/unknown.py \
     fish_classifier/serving/
COPY fish_classifier/feedback/__init__.py fish_classifier/feedback/database.py fish_classifier/feedback/export.py \
     fish_classifier/feedback/photos.py fish_classifier/feedback/schema.py fish_classifier/feedback/store.py \
     fish_classifier/feedback/
COPY app/ app/
COPY models/deploy/ models/deploy/
RUN test -f models/deploy/model.tflite \
 || { echo "models/deploy/model.tflite is missing: run dvc repro (its select stage exports it)" >&2; exit 1; }

USER fish
EXPOSE 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
CMD ["streamlit", "run", "app/app.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.fileWatcherType=none"]
