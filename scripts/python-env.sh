#!/usr/bin/env bash
# The test suite's Python tools (scripts/requirements-test.txt) in one virtual environment
# outside the clone ($RENAL_VENV, set by env.sh). Reinstalls only when the requirements change.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
req="$REPO_ROOT/scripts/requirements-test.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$RENAL_VENV/.requirements.sha256"
if [ -x "$RENAL_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    echo "python-env: ok ($RENAL_VENV)"
    exit 0
fi
echo "python-env: installing $(grep -c '^[a-zA-Z]' "$req") requirement(s) into $RENAL_VENV"
python3 -m venv "$RENAL_VENV"
"$RENAL_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" >"$stamp"
echo "python-env: ok ($RENAL_VENV)"
