#!/usr/bin/env bash
# The test suite's Python tools in two virtual environments outside the clone, each
# reinstalled only when its requirements change:
#   $RENAL_VENV        scripts/requirements-test.txt  (SciPy, scikit-learn, SimpleITK, torch, MIRP, ...)
#   $RENAL_DRIFT_VENV  scripts/requirements-drift.txt (NannyML and Evidently, which pin pandas apart)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

install() {
    local venv="$1" req="$2"
    local want stamp
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    stamp="$venv/.requirements.sha256"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
        echo "python-env: ok ($venv)"
        return
    fi
    echo "python-env: installing $(grep -c '^[a-zA-Z]' "$req") requirement(s) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
    echo "python-env: ok ($venv)"
}

install "$RENAL_VENV" "$REPO_ROOT/scripts/requirements-test.txt"
install "$RENAL_DRIFT_VENV" "$REPO_ROOT/scripts/requirements-drift.txt"
