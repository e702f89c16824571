#!/usr/bin/env bash
# The long fuzz runs: each cargo-fuzz target (fuzz/fuzz_targets: instance, series, seg, message)
# for FUZZ_SECONDS (default 600) on one core, from seeds made from a synthetic cohort, then a
# table of runs, corpus and crashes (libFuzzer's fork mode: a crash, timeout or out-of-memory is
# recorded and the run goes on for its whole time). A crash input lands in fuzz/artifacts/<target>/; copy it to
# fuzz/regressions/<target>/ (the suite's tests/fuzz_smoke.rs replays every file there) and fix.
#
#   scripts/fuzz.sh                  # all four, 10 minutes each
#   FUZZ_SECONDS=60 scripts/fuzz.sh seg message
#
# Needs cargo-fuzz (installed here if missing) and a nightly toolchain, or the stable one with
# RUSTC_BOOTSTRAP=1 (used when rustup has no nightly). Sanitizer: FUZZ_SANITIZER (default none:
# the code fuzzed is safe Rust, so libFuzzer's panic, timeout and memory checks are what count;
# "address" adds ASan).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-600}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(instance series seg message)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
fi
# Seeds: a small synthetic cohort's MR and SEG instances, series and SEG inputs in the
# targets' length-prefixed form (fuzz/bodies.rs), and messages.
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
RENAL="${RENAL_BIN:-}"   # a renal binary already built (the suite's), or build one
if [ -z "$RENAL" ]; then
    cargo build --release --locked -p renal-cli --quiet
    RENAL="$CARGO_TARGET_DIR/release/renal"
fi
"$RENAL" synth --out "$seeds/cohort" --lesions 1 --sites MAY --seed 5 >/dev/null
# The fuzz crate is a workspace of its own: a target folder of its own, not the suite's.
export CARGO_TARGET_DIR="$HOME/.cache/renal-mri/fuzz-target"
python3 - "$seeds" <<'PY'
import os, struct, sys, glob, json
root = sys.argv[1]
files = sorted(glob.glob(f"{root}/cohort/MAY/**/*.dcm", recursive=True))
seg = [f for f in files if b"1.2.840.10008.5.1.4.1.1.66.4" in open(f, "rb").read()[:4096]]  # SEG storage
mr = [f for f in files if f not in seg]
def join(parts):
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)
def out(target, name, data):
    d = f"fuzz/corpus/{target}"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/{name}", "wb").write(data)
read = lambda f: open(f, "rb").read()
for i, f in enumerate(mr[:3] + seg[:2]):
    out("instance", f"seed{i}", read(f))
out("series", "seed0", join([read(f) for f in mr[:3]]))
for i, f in enumerate(seg[:2]):
    out("seg", f"seed{i}", join([read(mr[0]), read(f)]))
out("message", "case", json.dumps({"version": 1, "case_id": "MAY-0001", "revision": 1}).encode())
out("message", "labels", b"case_id,label\nMAY-0001,malignant\n")
PY

printf '\n| target | seconds | runs | corpus | crashes |\n|---|---|---|---|---|\n' > "$seeds/table"
for t in "${TARGETS[@]}"; do
    log="$seeds/$t.log"
    echo "fuzzing $t for ${SECONDS_EACH}s (log: fuzz/artifacts/$t.log)"
    set +e
    (cd fuzz && "${FUZZ[@]}" run -s "$SANITIZER" -a "$t" -- -max_total_time="$SECONDS_EACH" \
        -rss_limit_mb=2048 -max_len=1048576 -timeout=10 -print_final_stats=1 \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1) >"$log" 2>&1
    rc=$?
    set -e
    mkdir -p fuzz/artifacts && cp "$log" "fuzz/artifacts/$t.log"
    # Fork mode prints "#<runs>: cov: ..." lines; the last one holds the total.
    runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
    printf '| %s | %s | %s | %s | %s |\n' "$t" "$SECONDS_EACH" "${runs:-?}" "$corpus" "$crashes" >> "$seeds/table"
    [ $rc -eq 0 ] || { echo "$t: libFuzzer exited $rc; the end of its log:"; tail -30 "$log"; }
done
cat "$seeds/table"
