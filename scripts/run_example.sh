#!/usr/bin/env bash
# Set up and run the main job: fit the shipped Theophylline data, print the parameter table,
# write the results file and the plots into ./outputs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
exec .venv/bin/python -m nlme_bayes.main "$@"
