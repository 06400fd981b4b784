#!/usr/bin/env bash
# `make eval` through the product: each labelled JSONL file is replayed through its own
# fresh stack (ingest-api, the scheduler's relay and one analysis-worker, release builds,
# an empty database and queues of their own), as a client posting signed batches; the
# verdicts are read back from GET /api/logs/ and scored as `make eval` scores the
# detector's (scripts/eval-stack.py). Prints one row per file and mode: the stack's F1
# against `logcanary-eval`'s on the same file, so that a difference between what the eval
# reports and what users get shows.
# Usage: scripts/eval-stack.sh FILE.jsonl... (make eval-stack INPUT="a.jsonl b.jsonl")
# LOGCANARY_EVAL_STACK_MODES: "in-order" (default), "concurrent", or both, space-separated.
# LOGCANARY_EVAL_STACK_FEEDBACK=n (make eval-stack FEEDBACK=n): the simulated operator of
# `make eval FEEDBACK=n` answers through GET /api/review/ and the feedback endpoint (in
# order only); `make eval` runs with the same FEEDBACK beside it.
# LOGCANARY_EVAL_STACK_REPLICAS=n runs n analysis-workers, as a scaled Deployment does
# (each task goes to one of them; they share templates and labels through Postgres).
# LOGCANARY_EVAL_STACK_TRACE=1 prints the operator's answers to stderr, as `make eval
# --trace` prints its own (OPERATOR lines).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: scripts/eval-stack.sh FILE.jsonl..." >&2
  exit 2
fi
inputs=()
for f in "$@"; do inputs+=("$(realpath -m -- "$f")"); done
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=target/release
DB=logcanary_eval_stack
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export LOGCANARY_AMQP_PREFIX=evalstack.
export LOGCANARY_HMAC_KEYS=default@ingest+read+operate:eval-stack-secret
export LOGCANARY_EVAL_SECRET=eval-stack-secret
export LOGCANARY_READ_TOKEN=eval-stack-read-token LOGCANARY_EVAL_READ_TOKEN=eval-stack-read-token
export LOGCANARY_LOG_FORMAT=json RUST_LOG=error
# A replay posts hours of log in seconds: the worker pulls the operator's answers (and
# other replicas' templates) before every batch, not every 5 s, as it would between
# batches that come minutes apart (LOGCANARY_EVAL_STACK_REFRESH_MS sets another interval).
export LOGCANARY_TEMPLATE_REFRESH_MS=${LOGCANARY_EVAL_STACK_REFRESH_MS:-0}
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072}
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
API=http://127.0.0.1:8130
modes=${LOGCANARY_EVAL_STACK_MODES:-in-order}
feedback=${LOGCANARY_EVAL_STACK_FEEDBACK:-0}
replicas=${LOGCANARY_EVAL_STACK_REPLICAS:-1}
if (( feedback > 0 )); then modes=in-order; fi

pids=()
stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap stop EXIT

start() {
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -qc "CREATE DATABASE $DB"
  "$BIN/ingest-api" migrate >/dev/null
  LOGCANARY_HTTP_ADDR=127.0.0.1:8130 LOGCANARY_ADMIN_ADDR=127.0.0.1:9130 "$BIN/ingest-api" & pids+=($!)
  LOGCANARY_ADMIN_ADDR=127.0.0.1:9131 "$BIN/scheduler" & pids+=($!)
  local port ports=(9130 9131) i
  for i in $(seq 1 "$replicas"); do
    port=$((9131 + i))
    LOGCANARY_ADMIN_ADDR=127.0.0.1:$port "$BIN/analysis-worker" & pids+=($!)
    ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  done
}

echo "| set | mode | stack F1 (P/R) | make eval F1 (P/R) | stack seconds |"
echo "|---|---|---|---|---|"
for input in "${inputs[@]}"; do
  ref=$("$BIN/logcanary-eval" "$input" --feedback "$feedback" 2>/dev/null | tail -1)
  for mode in $modes; do
    start
    flag=(--feedback "$feedback")
    [[ -n ${LOGCANARY_EVAL_STACK_TRACE:-} ]] && flag+=(--trace)
    [[ $mode == concurrent ]] && flag=(--concurrent)
    if [[ -n ${LOGCANARY_EVAL_STACK_DUMP:-} ]]; then
      flag+=(--dump "$LOGCANARY_EVAL_STACK_DUMP/$(basename "$input" .jsonl)-$mode.jsonl")
    fi
    got=$(python3 scripts/eval-stack.py "$input" --url "$API" "${flag[@]}" | tail -1)
    stop
    python3 - "$input" "$mode" "$got" "$ref" "$replicas" <<'PY'
import json, os, sys
name, mode, got, ref = os.path.basename(sys.argv[1]).removesuffix(".jsonl"), sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
if sys.argv[5] != "1":
    mode += f", {sys.argv[5]} workers"
cell = lambda d: f'{d["f1"]:.3f} ({d["precision"]:.2f}/{d["recall"]:.2f}' + (f', {d["feedback_used"]} answers)' if d.get("feedback_used") else ")")
note = "" if not (got["failed_tasks"] or got["entries_not_read_back"]) else f' ({got["failed_tasks"]} failed tasks, {got["entries_not_read_back"]} entries not read back)'
print(f'| {name} | {mode} | {cell(got)}{note} | {cell(ref)} | {got["seconds"]} |')
PY
  done
done
