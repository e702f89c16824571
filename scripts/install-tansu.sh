#!/usr/bin/env bash
# Build the Kafka-protocol broker used by the integration tests: tansu (Apache-Kafka-compatible,
# pure Rust, from crates.io), with the SQLite engine only (correct high watermarks, survives
# restarts; the S3/memory engine, dynostore, is left out). Built at opt-level 0 for the tests:
# about 4 minutes on 2 cores (with dynostore about 9).
# `install-tansu.sh bench` builds the broker `renal bench pipeline` measures with instead
# (its CPU per message is part of the measurement): opt-level 3 with both engines, SQLite and
# the in-memory one (dynostore), into ~/.cache/tansu-0.6.0-bench, about 15 to 25 minutes; point
# the bench at it with TANSU_HOME. The binary is cached outside the clone and rebuilt only when
# missing or of another version.
set -euo pipefail
TANSU_VERSION=0.6.0
if [ "${1:-}" = bench ]; then
    TANSU_OPT_LEVEL=3
    TANSU_FEATURES=libsql,dynostore
    TANSU_HOME="${TANSU_HOME:-$HOME/.cache/tansu-$TANSU_VERSION-bench}"
else
    TANSU_OPT_LEVEL=0
    TANSU_FEATURES=libsql
    TANSU_HOME="${TANSU_HOME:-$HOME/.cache/tansu-$TANSU_VERSION}"
fi
if "$TANSU_HOME/bin/tansu" --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
    echo "tansu $TANSU_VERSION: cached at $TANSU_HOME"
    exit 0
fi
echo "building tansu $TANSU_VERSION (opt-level $TANSU_OPT_LEVEL, features $TANSU_FEATURES) into $TANSU_HOME"
TANSU_TARGET="$(mktemp -d)"
trap 'rm -rf "$TANSU_TARGET"' EXIT
CARGO_PROFILE_RELEASE_OPT_LEVEL="$TANSU_OPT_LEVEL" CARGO_PROFILE_RELEASE_DEBUG=false CARGO_TARGET_DIR="$TANSU_TARGET" \
    cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" --root "$TANSU_HOME" --quiet
"$TANSU_HOME/bin/tansu" --version
