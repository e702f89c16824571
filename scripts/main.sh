#!/usr/bin/env bash
# README command one: set up, build, and run the main job on the embedded default: a synthetic
# multi-site cohort (renal synth), then every stage in one process on the in-process bus
# (renal run: ingest, preprocess, radiomics, 5 patient-grouped folds, per fold the calibrated
# clinical model, first-order baselines, the T2 and T1C networks (ResNet-18 at 64x64 on CPU;
# --study for the full ResNet-50 settings on a GPU) and their ensemble, each fold's held-out
# lesions through the inference and ensemble stages); held-out predictions in OUT/run/predictions.csv, the evaluation report in
# OUT/run/report/index.html, model bundles in OUT/run/models/, features in OUT/run/store/features/,
# dead letters in OUT/run/dead_letters.jsonl.
#   OUT      output folder (default: ./out)
#   LESIONS  cohort size (default: 160)
#   SEED     seed (default: 1)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO_ROOT/scripts/setup.sh"
"$REPO_ROOT/scripts/install-libtorch.sh"
cd "$REPO_ROOT"
cargo build --release --locked -p renal-cli
OUT="${OUT:-$REPO_ROOT/out}"
rm -rf "$OUT/cohort" "$OUT/run"
"$CARGO_TARGET_DIR/release/renal" synth --out "$OUT/cohort" --lesions "${LESIONS:-160}" --seed "${SEED:-1}"
"$CARGO_TARGET_DIR/release/renal" run --input "$OUT/cohort" --out "$OUT/run" "$@"
