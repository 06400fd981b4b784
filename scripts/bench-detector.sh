#!/usr/bin/env bash
# Detector benchmarks (embedding throughput vs a plain session.run loop, lines/s through the
# whole detector on the 13 Loghub samples interleaved, resident memory). Pinned to one core
# when taskset exists. Usage: scripts/bench-detector.sh [--lines N] [LOGHUB_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
"${CARGO:-cargo}" build --quiet --release -p logcanary-detector --example bench_detector
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi
exec "${pin[@]}" target/release/examples/bench_detector "$@"
