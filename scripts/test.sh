#!/usr/bin/env bash
# README command two (and .ci/run): set up, then build and run the whole test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO_ROOT/scripts/setup.sh"
# The Kafka tests start private tansu brokers on loopback ports (tests/support.rs, Broker). Its
# build (CPU) runs while the Python tools and libtorch download (network).
"$REPO_ROOT/scripts/install-tansu.sh" &
tansu=$!
# Python reference tools and stand-in servers (moto for S3; torch and torchvision for the CNN
# parity test).
"$REPO_ROOT/scripts/python-env.sh"
# libtorch for the CNN arm (tch): the minimal CPU set from PyPI's torch wheel.
"$REPO_ROOT/scripts/install-libtorch.sh"
# Grafana's dashboard schema and the TypeScript compiler (npm).
"$REPO_ROOT/scripts/install-grafana-schema.sh"
wait "$tansu"
# Tests run in parallel on 2 cores; more than one OpenMP thread each makes libtorch 2-5x slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$REPO_ROOT"
# One build: the test profile for every target; the e2e tests run the `renal` binary built here.
cargo build --locked --profile test --workspace --all-targets
export RENAL_BIN="$CARGO_TARGET_DIR/debug/renal"
# cargo-nextest (part of this machine's toolchain) runs the test binaries side by side, which
# halves the suite's time: many end-to-end tests wait on a broker or a worker, not the CPU.
# It does not run doc tests, so those run after it. Without nextest, cargo test does both.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --cargo-profile test --workspace --no-fail-fast
    cargo test --locked --workspace --doc
else
    cargo test --locked --workspace --no-fail-fast
fi
