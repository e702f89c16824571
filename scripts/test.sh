#!/usr/bin/env bash
# README command two (and .ci/run): set up, then build and run the whole test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO_ROOT/scripts/setup.sh"
# The Kafka tests start private tansu brokers on loopback ports (tests/support.rs, Broker).
"$REPO_ROOT/scripts/install-tansu.sh"
# Python reference tools and stand-in servers (moto for S3; torch and torchvision for the CNN
# parity test).
"$REPO_ROOT/scripts/python-env.sh"
# libtorch for the CNN arm (tch): the minimal CPU set from PyPI's torch wheel.
"$REPO_ROOT/scripts/install-libtorch.sh"
# Tests run in parallel on 2 cores; more than one OpenMP thread each makes libtorch 2-5x slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$REPO_ROOT"
# One build: the test profile for every target (the e2e tests run the `renal` binary built here),
# then the tests, which find everything already built.
cargo build --locked --profile test --workspace --all-targets
cargo test --locked --workspace --no-fail-fast
