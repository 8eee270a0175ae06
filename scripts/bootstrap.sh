#!/usr/bin/env bash
# Create (or reuse) ./.venv with a Python >= 3.12 and install nlme_bayes with its extras.
# Usage: bash scripts/bootstrap.sh [extras]   e.g. "test" or "test,bench"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"

find_python() {
    local cand v
    for cand in "${NLME_PYTHON:-}" python3.13 python3.12 python3 python; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        v=$("$cand" -c 'import sys; print(int(sys.version_info >= (3, 12)))' 2>/dev/null || echo 0)
        if [ "$v" = "1" ]; then command -v "$cand"; return 0; fi
    done
    # pyenv keeps versions that are not on PATH
    for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
        [ -x "$cand" ] && { echo "$cand"; return 0; }
    done
    return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    if ! PY=$(find_python); then
        echo "nlme_bayes needs Python >= 3.12 (PyMC 6 and ArviZ 1.x require it), and none was found." >&2
        echo "Install one (e.g. 'pyenv install 3.12') or point NLME_PYTHON at it." >&2
        exit 3
    fi
    echo "==> creating .venv with $PY ($("$PY" --version))"
    rm -rf .venv
    "$PY" -m venv .venv
fi
stamp=".venv/.nlme_bayes_installed"
want="$(sha1sum pyproject.toml | cut -c1-40) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing nlme_bayes[$extras] into .venv (first time: a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
fi
