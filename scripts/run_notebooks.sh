#!/usr/bin/env bash
# Execute every notebook in notebooks/ top to bottom with the full settings (long chains) and
# write the executed copies to build/notebooks/, which the documentation build then renders.
#
#   bash scripts/run_notebooks.sh                 # all notebooks, full settings
#   bash scripts/run_notebooks.sh --fast          # NLME_FAST=1: short chains (what the tests run)
#   bash scripts/run_notebooks.sh pheno_vs_nonmem # only the notebooks named (stems)
#
# Then: bash scripts/build_docs.sh  (the site, with these outputs, in docs/_build/html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
if [ "${1:-}" = "--fast" ]; then export NLME_FAST=1; shift; else unset NLME_FAST; fi
mkdir -p build/notebooks
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python - "$@" <<'PY'
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

out = pathlib.Path("build/notebooks")
names = set(sys.argv[1:])
paths = [p for p in sorted(pathlib.Path("notebooks").glob("*.ipynb"))
         if not names or p.stem in names]
if names - {p.stem for p in paths}:
    sys.exit(f"no such notebook(s): {', '.join(sorted(names - {p.stem for p in paths}))}")
failed = []
for path in paths:
    t0 = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    work = out / f"{path.stem}_files"
    work.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
        status = "ok"
    except Exception as exc:  # keep going: report every failing notebook
        status = f"FAILED: {type(exc).__name__}"
        failed.append(path.name)
    nbformat.write(nb, out / path.name)
    print(f"{path.name:40s} {time.perf_counter() - t0:7.1f} s  {status}", flush=True)
sys.exit(1 if failed else 0)
PY
