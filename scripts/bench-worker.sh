#!/usr/bin/env bash
# Worker drain on a realistic stream (part of `make bench`): the 13 Loghub samples
# interleaved (scripts/make-stream.py), repeated to BENCH_WORKER_LINES lines (default
# 100 000), posted through ingest-api as a mix of single-entry and batch tasks while no
# worker runs; then one analysis-worker drains the backlog, cold (empty database: every
# template is new) and warm (the same stream again: templates known, loaded from the table
# at start-up), then two replicas warm and two cold (an empty database again: both meet
# the same new messages at once). Reports lines/s, the share of lines that needed the model, the time per
# stage, the worker's peak resident memory, and POST -> scored latency at 1 000 entries/s.
# Needs ../shared/data/loghub; skips with a message without it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=target/release
LINES=${BENCH_WORKER_LINES:-100000}
RATE=${BENCH_LATENCY_RATE:-1000}
RATE_SECONDS=${BENCH_LATENCY_SECONDS:-20}
DB=logcanary_bench_worker
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export LOGCANARY_AMQP_PREFIX=benchw.
export LOGCANARY_HMAC_KEYS=default:bench-secret
export LOGCANARY_LOG_FORMAT=json RUST_LOG=warn
# As the images and `make run` start the scoring workers (deploy/Dockerfile).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072}
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
API=http://127.0.0.1:8110
WORKER_ADMIN=127.0.0.1:9196
mkdir -p target/bench
out=target/bench/worker.jsonl
: > "$out"

if [[ ! -d ../shared/data/loghub ]]; then
  echo "bench-worker: ../shared/data/loghub is absent; skipping the realistic worker drain." >&2
  exit 0
fi
[[ -s .cache/bench/loghub-stream.jsonl ]] || python3 scripts/make-stream.py

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap cleanup EXIT

# An empty database, ingest-api and the scheduler as in the stack (its relay, and the
# planner statistics it keeps current).
fresh_stack() {
  cleanup
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -qc "CREATE DATABASE $DB"
  "$BIN/ingest-api" migrate
  LOGCANARY_HTTP_ADDR=127.0.0.1:8110 LOGCANARY_ADMIN_ADDR=127.0.0.1:9195 "$BIN/ingest-api" & pids+=($!)
  LOGCANARY_ADMIN_ADDR=127.0.0.1:9197 "$BIN/scheduler" & pids+=($!)
  for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:9195/readyz >/dev/null 2>&1 && break; sleep 0.1; done
}
fresh_stack

sql() { psql -h 127.0.0.1 -U postgres -d $DB -Atc "$1"; }
pending() { sql "SELECT count(*) FROM tasks WHERE status NOT IN ('SUCCESS','FAILURE') AND task_name IN ('logs.tasks.analyze_log_entry','logs.tasks.batch_analyze_logs')"; }

# Drains the backlog with fresh workers; prints one JSON line. $1: cold | warm | warm_2x |
# cold_2x,
# $2: replicas (default 1; stage times and memory are the first replica's).
drain() {
  local phase=$1 replicas=${2:-1} scored_before templates_before
  scored_before=$(sql "SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL")
  templates_before=$(sql "SELECT count(*) FROM templates")
  local wpids=() i
  for i in $(seq 0 $((replicas - 1))); do
    # shellcheck disable=SC2086 # BENCH_WORKER_ARGS: extra worker flags, word-split on purpose
    LOGCANARY_ADMIN_ADDR=127.0.0.1:$((9196 + 10 * i)) "$BIN/analysis-worker" ${BENCH_WORKER_ARGS:-} & wpids+=($!)
    pids+=($!)
  done
  for i in $(seq 0 $((replicas - 1))); do
    for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$((9196 + 10 * i))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  local wpid=${wpids[0]} start end rss=0 r
  start=$(date +%s.%N)
  for _ in $(seq 1 36000); do
    r=$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status" 2>/dev/null || echo 0)
    (( r > rss )) && rss=$r
    [[ "$(pending)" == 0 ]] && break
    sleep 0.2
  done
  end=$(date +%s.%N)
  curl -fsS "http://$WORKER_ADMIN/metrics" > "target/bench/worker-$phase.metrics" || true
  local scored new_templates
  scored=$(( $(sql "SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL") - scored_before ))
  new_templates=$(( $(sql "SELECT count(*) FROM templates") - templates_before ))
  python3 - "$phase" "$scored" "$start" "$end" "$rss" "$replicas" "target/bench/worker-$phase.metrics" "$new_templates" <<'PY' | tee -a "$out"
import json, re, sys
phase, scored, a, b, rss_kib, replicas, metrics, new_templates = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
stages, counters = {}, {}
for line in open(metrics):
    m = re.match(r'logcanary_scoring_stage_seconds_sum\{stage="(\w+)"\} (\S+)', line)
    if m:
        stages[m.group(1)] = round(float(m.group(2)), 3)
    m = re.match(r'(logcanary_embedding_cache_(hits|misses)_total|logcanary_mq_processing_seconds_sum)(\{[^}]*\})? (\S+)', line)
    if m:
        counters[m.group(1)] = counters.get(m.group(1), 0.0) + float(m.group(4))
hits, misses = counters.get("logcanary_embedding_cache_hits_total", 0), counters.get("logcanary_embedding_cache_misses_total", 0)
seconds = b - a
print(json.dumps({"bench": f"worker_drain_{phase}", "replicas": replicas, "lines_scored": scored, "seconds": round(seconds, 2),
    "lines_per_second": round(scored / seconds, 1) if seconds else None,
    "model_share": round(misses / (hits + misses), 4) if hits + misses else None,
    "texts_embedded": int(misses), "new_templates": new_templates, "stage_seconds": stages,
    "handler_seconds": round(counters.get("logcanary_mq_processing_seconds_sum", 0), 2),
    "peak_rss_mib": round(rss_kib / 1024, 1)}))
PY
  if [[ "$phase" != warm ]]; then
    for wpid in "${wpids[@]}"; do kill -TERM "$wpid"; wait "$wpid" 2>/dev/null || true; done
  fi
}

post() {
  echo "bench-worker: posting $LINES lines (13 Loghub systems interleaved; 1 group in 3 as single-entry POSTs)" >&2
  "$BIN/logcanary-bench" replay --url "$API" --secret bench-secret --lines "$LINES" | tee -a "$out"
}

post
drain cold
post
drain warm

# POST -> scored latency with the warm worker running, at a fixed rate of single entries.
echo "bench-worker: POST -> scored latency at $RATE entries/s for $RATE_SECONDS s" >&2
mark=$(sql "SELECT coalesce(max(id), 0) FROM log_entries")
"$BIN/logcanary-bench" single --url "$API" --secret bench-secret --rate "$RATE" --concurrency 64 --seconds "$RATE_SECONDS" | tee -a "$out"
for _ in $(seq 1 300); do [[ "$(pending)" == 0 ]] && break; sleep 0.2; done
sql "SELECT json_build_object('bench', 'post_to_scored', 'rate', $RATE, 'entries', count(*),
       'p50_ms', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM analyzed_at - received_at)) * 1000)::numeric, 1),
       'p99_ms', round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM analyzed_at - received_at)) * 1000)::numeric, 1),
       'max_ms', round((max(extract(epoch FROM analyzed_at - received_at)) * 1000)::numeric, 1))
     FROM log_entries WHERE id > $mark AND analyzed_at IS NOT NULL" | tee -a "$out"

# Two replicas on one queue, warm: the template store stays consistent (no template
# created twice, every line scored once) and how close to 2x the cores allow.
for p in "${pids[@]}"; do
  if ps -o args= -p "$p" 2>/dev/null | grep -q analysis-worker; then kill -TERM "$p"; wait "$p" 2>/dev/null || true; fi
done
post
drain warm_2x 2
sql "SELECT json_build_object('bench', 'consistency', 'templates', count(*), 'distinct_keys', count(DISTINCT template_key),
       'entries', (SELECT count(*) FROM log_entries), 'scored', (SELECT count(*) FROM log_entries WHERE analyzed_at IS NOT NULL),
       'tasks_started_twice', (SELECT count(*) FROM tasks WHERE attempts > 1)) FROM templates" | tee -a "$out"

# Two replicas on one queue, cold (an empty database again): both meet the same new
# messages at once; the templates stored are the ones one replica stored cold (a message
# two workers mine under different ids is written to one row).
fresh_stack
post
drain cold_2x 2
sql "SELECT json_build_object('bench', 'consistency_cold_2x', 'templates', count(*)) FROM templates" | tee -a "$out"

python3 - "$out" <<'PY' | tee target/bench/worker-summary.txt
import json, sys
r = {json.loads(l)["bench"] + str(i): json.loads(l) for i, l in enumerate(open(sys.argv[1]))}
for d in r.values():
    b = d["bench"]
    if b.startswith("worker_drain"):
        st = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(d["stage_seconds"].items()))
        print(f"{b:22s}: {d['lines_per_second']:.0f} lines/s ({d['lines_scored']} lines in {d['seconds']} s, {d['replicas']} replica(s), {d['new_templates']} new templates), model for {100 * (d['model_share'] or 0):.2f}% of lines, peak RSS {d['peak_rss_mib']} MiB; stages: {st}")
    elif b == "replay":
        print(f"{'ingest (replay)':22s}: {d['lines_per_second']:.0f} lines/s ({d['requests']} requests, {d['single_entry_requests']} single-entry)")
    elif b == "consistency":
        print(f"after all phases        : {d['templates']} templates ({d['distinct_keys']} distinct keys), {d['scored']} of {d['entries']} entries scored, {d['tasks_started_twice']} tasks started twice")
    elif b == "consistency_cold_2x":
        cold = next(x for x in r.values() if x["bench"] == "worker_drain_cold")
        print(f"after cold_2x           : {d['templates']} templates (one replica cold: {cold['new_templates']})")
    elif b == "post_to_scored":
        print(f"POST -> scored at {d['rate']}/s: p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms ({d['entries']} entries)")
PY
