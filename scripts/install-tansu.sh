#!/usr/bin/env bash
# Build the Kafka-protocol broker used by the integration tests: tansu (Apache-Kafka-compatible,
# pure Rust, from crates.io), with the SQLite engine only (correct high watermarks, survives
# restarts; the S3/memory engine, dynostore, is left out). Built at opt-level 0 for the tests:
# about 4 minutes on 2 cores (with dynostore it was about 9, at the release opt-level about 50).
# TANSU_OPT_LEVEL=3 builds an optimised broker for `renal bench pipeline` (its CPU per message is
# part of what the bench measures) into its own folder; point the bench at it with TANSU_HOME.
# The binary is cached outside the clone and rebuilt only when missing or of another version.
set -euo pipefail
TANSU_VERSION=0.6.0
TANSU_OPT_LEVEL="${TANSU_OPT_LEVEL:-0}"
if [ "$TANSU_OPT_LEVEL" = 0 ]; then
    TANSU_HOME="${TANSU_HOME:-$HOME/.cache/tansu-$TANSU_VERSION}"
else
    TANSU_HOME="${TANSU_HOME:-$HOME/.cache/tansu-$TANSU_VERSION-opt$TANSU_OPT_LEVEL}"
fi
if "$TANSU_HOME/bin/tansu" --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
    echo "tansu $TANSU_VERSION: cached at $TANSU_HOME"
    exit 0
fi
echo "building tansu $TANSU_VERSION at opt-level $TANSU_OPT_LEVEL into $TANSU_HOME (opt-level 0: about 4 min on 2 cores)"
TANSU_TARGET="$(mktemp -d)"
trap 'rm -rf "$TANSU_TARGET"' EXIT
CARGO_PROFILE_RELEASE_OPT_LEVEL="$TANSU_OPT_LEVEL" CARGO_PROFILE_RELEASE_DEBUG=false CARGO_TARGET_DIR="$TANSU_TARGET" \
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$TANSU_HOME" --quiet
"$TANSU_HOME/bin/tansu" --version
