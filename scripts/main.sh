#!/usr/bin/env bash
# README command one: set up, build, and run the main job on the embedded default.
# Today the main job is the synthetic multi-site cohort (renal synth); the embedded pipeline
# (renal run) joins it as its stages land.
#   OUT      output folder (default: ./out)
#   LESIONS  cohort size (default: 160)
#   SEED     seed (default: 1)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO_ROOT/scripts/setup.sh"
cd "$REPO_ROOT"
cargo build --release --locked -p renal-cli
OUT="${OUT:-$REPO_ROOT/out}"
rm -rf "$OUT/cohort"
"$CARGO_TARGET_DIR/release/renal" synth --out "$OUT/cohort" --lesions "${LESIONS:-160}" --seed "${SEED:-1}"
