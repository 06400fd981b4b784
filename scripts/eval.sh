#!/usr/bin/env bash
# Replay a labelled JSONL file through the detector; the last line printed is the JSON
# result. Usage: scripts/eval.sh INPUT.jsonl [FEEDBACK] [extra logcanary-eval flags...]
# (make eval INPUT=file.jsonl [FEEDBACK=n]). Build sets with scripts/make-labelled-sets.py.
set -euo pipefail
if [[ $# -lt 1 || -z "${1:-}" ]]; then
    echo "usage: scripts/eval.sh INPUT.jsonl [FEEDBACK] [--baseline severity|new-template]" >&2
    exit 2
fi
# INPUT is relative to where the script was called from, not to the checkout.
input=$(realpath -m -- "$1")
cd "$(dirname "$0")/.."
feedback=${2:-0}
shift $(( $# >= 2 ? 2 : 1 ))
exec "${CARGO:-cargo}" run --quiet --release -p logcanary-detector --bin logcanary-eval -- \
    "$input" --feedback "${feedback:-0}" "$@"
