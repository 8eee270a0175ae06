#!/usr/bin/env bash
# Build the documentation site into docs/_build/html (warnings are errors, as in the tests).
# Notebooks are shown with the outputs of the last `bash scripts/run_notebooks.sh`
# (build/notebooks/), or without outputs if it has not been run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m sphinx -W --keep-going -b html \
    -d docs/_build/doctrees docs docs/_build/html "$@"
echo "open docs/_build/html/index.html"
