#!/usr/bin/env bash
# README command two (and .ci/run): set up, then build and run the whole test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO_ROOT/scripts/setup.sh"
# The Kafka tests start private tansu brokers on loopback ports (tests/support.rs, Broker).
"$REPO_ROOT/scripts/install-tansu.sh"
# Python reference tools and stand-in servers (moto for S3).
"$REPO_ROOT/scripts/python-env.sh"
cd "$REPO_ROOT"
cargo build --locked --workspace --all-targets
cargo test --locked --workspace --no-fail-fast
