#!/usr/bin/env bash
# Install everything renal-mri needs on a fresh Debian machine. Safe to run again: it only
# installs what is missing.
#   - Rust toolchain: must already be on PATH (rustup); the crates come from crates.io.
#   - DCMTK (dcmdump, storescu) and dcm2niix: independent DICOM readers used by the tests.
#   - Prometheus and promtool (Debian's package): the tests scrape workers with a real Prometheus
#     and check the deployment's scrape config and alert rules.
#   - Alertmanager's amtool (Debian's package): checks the deployment's alert routing to the
#     trainer worker.
#   - Node.js and npm (Debian's packages): the dashboards are type-checked against Grafana's
#     published schema (scripts/install-grafana-schema.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

missing=()
command -v dcmdump >/dev/null 2>&1 || missing+=(dcmtk)
command -v dcm2niix >/dev/null 2>&1 || missing+=(dcm2niix)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# librdkafka is built against OpenSSL (Kafka over TLS and SASL/SCRAM); the tests' certificates
# come from the openssl tool.
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ((${#missing[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "setup: installing ${missing[*]} from Debian packages"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: ok (cargo $(cargo --version | cut -d' ' -f2), dcmtk $( (dcmdump --version 2>&1 || true) | sed -n '1s/.*\(v[0-9][0-9.]*\).*/\1/p'), build dir $CARGO_TARGET_DIR)"
