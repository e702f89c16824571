# Sourced by the other scripts: one build folder outside the clone, so repeated runs (and CI on
# the same machine) reuse compiled dependencies. Override CARGO_TARGET_DIR to build elsewhere.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/renal-mri/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental caches: each rebuild of a crate left a new session of them, and across many
# sessions they grew to 17 GB in the shared build folder and filled the disk. Set
# CARGO_INCREMENTAL=1 when iterating on one crate.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
# The test suite's Python tools (scripts/python-env.sh installs them).
export RENAL_VENV="${RENAL_VENV:-$HOME/.cache/renal-mri/venv}"
# NannyML and Evidently, the drift references, in a venv of their own (python-env.sh too).
export RENAL_DRIFT_VENV="${RENAL_DRIFT_VENV:-$HOME/.cache/renal-mri/drift-venv}"
# Grafana's dashboard schema and tsc (scripts/install-grafana-schema.sh installs them).
export RENAL_GRAFANA_SCHEMA="${RENAL_GRAFANA_SCHEMA:-$HOME/.cache/renal-mri/grafana-schema}"
# libtorch for the CNN arm (scripts/install-libtorch.sh installs it). torch-sys reads LIBTORCH at
# build time; the binaries find the libraries through LD_LIBRARY_PATH at run time. Changing
# LIBTORCH rebuilds torch-sys (minutes).
export RENAL_TORCH="${RENAL_TORCH:-$HOME/.cache/renal-mri/libtorch-2.13.0}"
export LIBTORCH="${LIBTORCH:-$RENAL_TORCH/torch}"
case ":${LD_LIBRARY_PATH:-}:" in
    *":$LIBTORCH/lib:"*) ;;
    *) export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
