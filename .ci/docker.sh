#!/usr/bin/env bash
# CI: build the serving image from the project's Dockerfile, run it, and test it in a browser
# (tests/app/test_docker_container.py), then remove the containers and images it made.
#
# Docker Hub is out of reach, so the base image is built here from Debian's packages (mmdebstrap,
# from this machine's apt sources, then `docker import`), and the serving wheels are downloaded with
# pip into a wheelhouse that the build installs from offline.
#
# Kept between runs, because rebuilding them gives the same thing: the base image (named after its
# suite and packages) and the wheelhouse (named after a hash of app/requirements.txt) in $CACHE.
# Everything else it makes (containers, the app image, the build's intermediate images) is removed.
# When Docker cannot run on this machine it prints "DOCKER CHECK SKIPPED: <reason>" and exits 0;
# any other failure exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

SUITE=bookworm  # Debian 12: Python 3.11, what the Dockerfile's python:3.11-slim default has
PACKAGES=python3,python3-venv,ca-certificates,passwd
BASE_IMAGE="fish-base:$SUITE-$(echo "$PACKAGES" | sha256sum | cut -c1-8)"
CACHE=${FISH_CI_CACHE:-/var/cache/fish-classifier}
LIMIT=${FISH_DOCKER_TIME_LIMIT:-1800}  # seconds for this whole script
PYTHON=${PYTHON:-.venv/bin/python}
ARTIFACTS=test-artifacts
FIGURES=$ARTIFACTS/docker-figures.json
mkdir -p "$ARTIFACTS"
rm -f "$FIGURES"

skip() { echo "DOCKER CHECK SKIPPED: $*"; exit 0; }
fail() { echo "DOCKER CHECK FAILED: $*"; exit 1; }
left() { echo $((LIMIT - SECONDS)); }

dockerd_pid=""
cleanup() {
  if docker info >/dev/null 2>&1; then
    # Whatever the test made (all labelled), also after a crash or a timeout.
    docker ps -aq --filter label=fish-classifier-ci=1 | xargs -r docker rm --force >/dev/null
    docker images -q --filter label=fish-classifier-ci=1 | xargs -r docker rmi --force >/dev/null
    # The unnamed images the build left (its first stage), recognised by descending from our base image.
    if base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null); then
      for id in $(docker images -q --filter dangling=true); do
        docker history -q "$id" | grep -q "${base_id:7:12}" && docker rmi --force "$id" >/dev/null
      done
    fi
  fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  fi
}
trap cleanup EXIT

# 1. Docker and mmdebstrap from Debian.
if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || skip "docker.io and mmdebstrap are not installed and this user cannot install them"
  { apt-get update -qq && apt-get install -y -qq docker.io mmdebstrap >/dev/null; } \
    || skip "apt-get install docker.io mmdebstrap failed"
fi

# 2. A running daemon: this machine's, or one started here for this script.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "no Docker daemon is running and this user cannot start one"
  dockerd >"$ARTIFACTS/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 \
    || skip "dockerd did not start: $(tail -n 3 "$ARTIFACTS/dockerd.log" | tr '\n' ' ')"
fi
echo "docker: client $(docker version -f '{{.Client.Version}}'), daemon $(docker version -f '{{.Server.Version}}')"

# 3. The base image, from this machine's Debian mirror when it runs the same suite.
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE: reused"
else
  mirrors=()
  if grep -qs "VERSION_CODENAME=$SUITE" /etc/os-release; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && grep -qs "debian" "$f" && mirrors+=("$f")
    done
  fi
  echo "base image $BASE_IMAGE: mmdebstrap $SUITE with $PACKAGES from ${mirrors[*]:-deb.debian.org}"
  timeout 900 mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$SUITE" - "${mirrors[@]}" \
    | docker import --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE_IMAGE" >/dev/null \
    || fail "could not build the base image $BASE_IMAGE with mmdebstrap"
fi
if ! docker run --rm "$BASE_IMAGE" true 2>"$ARTIFACTS/docker-run.log"; then
  skip "Docker cannot start containers here: $(tail -n 2 "$ARTIFACTS/docker-run.log" | tr '\n' ' ')"
fi
docker run --rm "$BASE_IMAGE" python3 -c 'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version' \
  || fail "the base image $BASE_IMAGE has no Python 3.11 with venv"

# 4. The serving wheels, for the base image's Python and platform.
arch=$(uname -m)
wheels="$CACHE/wheelhouse-cp311-$arch-$(cat app/requirements.txt app/constraints.txt | sha256sum | cut -c1-12)"
if [ -f "$wheels/.complete" ]; then
  echo "wheelhouse $wheels: reused"
else
  platforms=(--platform "manylinux2014_$arch")
  for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_$arch"); done  # bookworm: glibc 2.36
  rm -rf "$wheels.partial" && mkdir -p "$wheels.partial"
  timeout 600 "$PYTHON" -m pip download --quiet --only-binary=:all: --python-version 3.11 --implementation cp \
      --abi cp311 "${platforms[@]}" -r app/requirements.txt -c app/constraints.txt -d "$wheels.partial" \
    || fail "pip download of app/requirements.txt failed"
  touch "$wheels.partial/.complete" && rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
  echo "wheelhouse $wheels: $(find "$wheels" -name '*.whl' | wc -l) wheels"
fi

# 5. Build, run and test the image; the test writes the figures.
[ "$(left)" -gt 120 ] || fail "no time left for the container test ($(left) s)"
FISH_DOCKER_TEST=1 FISH_DOCKER_BASE_IMAGE="$BASE_IMAGE" FISH_WHEELHOUSE="$wheels" FISH_DOCKER_FIGURES="$FIGURES" \
  timeout "$(left)" "$PYTHON" -m pytest -p no:cacheprovider -rA -s tests/app/test_docker_container.py
status=$?
[ "$status" = 0 ] || fail "tests/app/test_docker_container.py exited with $status"
[ -s "$FIGURES" ] || fail "the container test ran no checks (see its skip reasons above)"
echo "DOCKER CHECK PASSED: image built from ./Dockerfile on $BASE_IMAGE, healthy, named the photo in the browser, kept its mark on the host's volume"
cat "$FIGURES"
