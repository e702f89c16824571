#!/usr/bin/env bash
# Grafana's published dashboard schema (npm's @grafana/schema, the TypeScript types Grafana
# generates from its own CUE kinds) and the TypeScript compiler, at the versions
# tests/reference/grafana/package-lock.json pins, into $RENAL_GRAFANA_SCHEMA.
# tests/grafana_dashboards.rs type-checks deploy/grafana/dashboards/*.json against it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
want="$REPO_ROOT/tests/reference/grafana"
if cmp -s "$want/package-lock.json" "$RENAL_GRAFANA_SCHEMA/package-lock.json" \
    && [ -x "$RENAL_GRAFANA_SCHEMA/node_modules/.bin/tsc" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install-grafana-schema: npm not found (scripts/setup.sh installs Debian's npm)" >&2
    exit 1
fi
mkdir -p "$RENAL_GRAFANA_SCHEMA"
cp "$want/package.json" "$want/package-lock.json" "$RENAL_GRAFANA_SCHEMA/"
(cd "$RENAL_GRAFANA_SCHEMA" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "install-grafana-schema: @grafana/schema and tsc in $RENAL_GRAFANA_SCHEMA"
