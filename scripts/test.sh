#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine, then run ruff and the tests.
#
#   1. system packages for a virtual X server and Qt's X libraries (apt-get: needs root or sudo; skipped with a
#      note where apt-get is missing or not allowed, and then the GUI tests are skipped with one line saying so),
#   2. a virtual environment .venv with the CPU build of PyTorch and napari-cvdm[test],
#   3. ruff check . and pytest (extra arguments go to pytest, e.g. scripts/test.sh -x tests/inference).
#
# No GPU and no network beyond the package registries are used. CI (.ci/run) runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

X_PACKAGES=(xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libgl1 libegl1 libxkbcommon-x11-0)

if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        SUDO=(none)
    fi
    if [ "${SUDO[*]}" = none ]; then
        echo "note: not root and no sudo: cannot apt-get install ${X_PACKAGES[*]}; GUI tests may be skipped" >&2
    elif ! { "${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
            --no-install-recommends "${X_PACKAGES[@]}" >/dev/null; }; then
        echo "note: apt-get could not install ${X_PACKAGES[*]}; GUI tests may be skipped" >&2
    fi
else
    echo "note: no apt-get here: install an X server (Xvfb) and Qt's X libraries yourself, or GUI tests are skipped" >&2
fi

python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0  # the CPU build: an unpinned torch would pull a CUDA build of several GB
.venv/bin/pip install -q -e ".[test]"
.venv/bin/ruff check .
.venv/bin/pytest -p no:cacheprovider "$@"
