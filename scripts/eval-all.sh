#!/usr/bin/env bash
# Every labelled set in .cache/eval/ (make eval-data) through both baselines and the
# scorer without and with feedback; one table row per set and detector, then the means.
# Usage: scripts/eval-all.sh [FEEDBACK (default 30)] [extra logcanary-eval flags...]
# LOGCANARY_EVAL_DIR=dir reads the sets from dir instead (e.g. sets built with
# make-labelled-sets.py --seed N or --gap-mean S, to see how the figures move).
set -euo pipefail
cd "$(dirname "$0")/.."
feedback=${1:-30}
shift $(( $# >= 1 ? 1 : 0 ))
"${CARGO:-cargo}" build --quiet --release -p logcanary-detector --bin logcanary-eval
bin="${CARGO_TARGET_DIR:-target}/release/logcanary-eval"
# Sets whose figures were not used to settle weights and thresholds.
NOT_TUNED=burst-thunderbird-hadoop,burst-mac-zookeeper,burst-openstack-linux,holdout-thunderbird,inject-openssh-thunderbird
shopt -s nullglob
dir=${LOGCANARY_EVAL_DIR:-.cache/eval}
sets=("$dir"/*.jsonl)
if [[ ${#sets[@]} -eq 0 ]]; then
    echo "eval-all: no sets in $dir/; run make eval-data first" >&2
    exit 2
fi
for f in "${sets[@]}"; do
    name=$(basename "$f" .jsonl)
    sev=$("$bin" "$f" --baseline severity 2>/dev/null | tail -1)
    new=$("$bin" "$f" --baseline new-template 2>/dev/null | tail -1)
    none=$("$bin" "$f" --feedback 0 "$@" 2>/dev/null | tail -1)
    fb=$("$bin" "$f" --feedback "$feedback" "$@" 2>/dev/null | tail -1)
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$sev" "$new" "$none" "$fb"
done | python3 scripts/eval-table.py "$feedback" "${LOGCANARY_EVAL_NOT_TUNED:-$NOT_TUNED}"
