#!/usr/bin/env bash
# `make bench`: measure the ingest path of a running stack from a separate process on
# loopback, and the ceilings of its parts (RabbitMQ confirmed publishes, Postgres
# multi-row inserts) in the same run. Uses its own database and queue prefix, so it
# does not disturb a stack started with `make run`. Figures go to stdout as JSON lines
# and, summarised, to target/bench/summary.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=target/release
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
DB=logcanary_bench
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export LOGCANARY_AMQP_PREFIX=bench.
export LOGCANARY_HMAC_KEYS=default:bench-secret
# The shippers' endpoints take an API token, configured by its SHA-256.
BENCH_TOKEN=lc_bench-shipper-token
export LOGCANARY_API_TOKENS="bench@ingest:$(printf '%s' "$BENCH_TOKEN" | sha256sum | cut -d' ' -f1)"
export LOGCANARY_LOG_FORMAT=json RUST_LOG=warn
mkdir -p target/bench
out=target/bench/results.jsonl
: > "$out"

psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -qc "CREATE DATABASE $DB"
"$BIN/ingest-api" migrate

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

LOGCANARY_HTTP_ADDR=127.0.0.1:8100 LOGCANARY_ADMIN_ADDR=127.0.0.1:9190 "$BIN/ingest-api" & pids+=($!)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:9190/readyz >/dev/null 2>&1 && break; sleep 0.1; done

run() { echo "bench: $*" >&2; "$BIN/logcanary-bench" "$@" | tee -a "$out"; }
api=(--url http://127.0.0.1:8100 --secret bench-secret --seconds "$SECONDS_PER_RUN")

# 1. Ingest alone (no worker competing for the two cores): what is accepted durably.
run single "${api[@]}" --concurrency 64
run single "${api[@]}" --concurrency 64 --rate 2000
run batch "${api[@]}" --size 1000 --concurrency 4

# 1b. The same single-entry load against a replica that keeps used signatures in memory
# only (LOGCANARY_REPLAY_GUARD=memory): what recording them in Postgres, so that every
# replica refuses a replay, costs. Reported as ratio single/single_memory_guard.
LOGCANARY_REPLAY_GUARD=memory LOGCANARY_HTTP_ADDR=127.0.0.1:8101 LOGCANARY_ADMIN_ADDR=127.0.0.1:9192 "$BIN/ingest-api" & memory_pid=$!
pids+=($memory_pid)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:9192/readyz >/dev/null 2>&1 && break; sleep 0.1; done
echo "bench: single (LOGCANARY_REPLAY_GUARD=memory)" >&2
"$BIN/logcanary-bench" single --url http://127.0.0.1:8101 --secret bench-secret --seconds "$SECONDS_PER_RUN" --concurrency 64 \
  | python3 -c 'import json, sys
for line in sys.stdin:
    d = json.loads(line); d["bench"] += "_memory_guard"; print(json.dumps(d))' | tee -a "$out"
kill -TERM "$memory_pid"; wait "$memory_pid" 2>/dev/null || true

# 1c. The log shippers' protocols against the batch endpoint, same records per request and
# connections, on a replica with a database and queue names of its own (so the worker
# drain below keeps its backlog), rotated so that no endpoint always runs first. Figures
# tagged `_vs` (batch_vs is the batch endpoint again, on that replica).
SDB=logcanary_bench_shippers
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $SDB WITH (FORCE)" -qc "CREATE DATABASE $SDB"
DATABASE_URL=postgres://postgres@127.0.0.1:5432/$SDB "$BIN/ingest-api" migrate
DATABASE_URL=postgres://postgres@127.0.0.1:5432/$SDB LOGCANARY_AMQP_PREFIX=benchs. \
  LOGCANARY_HTTP_ADDR=127.0.0.1:8102 LOGCANARY_ADMIN_ADDR=127.0.0.1:9193 "$BIN/ingest-api" & shippers_pid=$!
pids+=($shippers_pid)
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:9193/readyz >/dev/null 2>&1 && break; sleep 0.1; done
tag() { python3 -c 'import json, sys
for line in sys.stdin:
    d = json.loads(line); d["bench"] += "_vs"; print(json.dumps(d))' | tee -a "$out"; }
sapi=(--url http://127.0.0.1:8102 --seconds "$SECONDS_PER_RUN" --size 1000 --concurrency 4)
for round in 1 2; do
  for what in batch otlp otlp_gzip loki; do
    echo "bench: $what (round $round, shipper replica)" >&2
    case $what in
      batch) "$BIN/logcanary-bench" batch "${sapi[@]}" --secret bench-secret ;;
      otlp) "$BIN/logcanary-bench" otlp "${sapi[@]}" --token "$BENCH_TOKEN" ;;
      otlp_gzip) "$BIN/logcanary-bench" otlp "${sapi[@]}" --token "$BENCH_TOKEN" --gzip ;;
      loki) "$BIN/logcanary-bench" loki "${sapi[@]}" --token "$BENCH_TOKEN" ;;
    esac | tag
  done
done
kill -TERM "$shippers_pid"; wait "$shippers_pid" 2>/dev/null || true
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $SDB WITH (FORCE)"
# Its queued batch tasks go with it (nothing consumes them).
if command -v rabbitmqctl >/dev/null 2>&1; then
  rabbitmqctl -q list_queues name 2>/dev/null | grep '^benchs\.' | while read -r q; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
fi

# 2. The parts alone.
run amqp --url "$AMQP_URL" --batch 64 --concurrency 4 --seconds "$SECONDS_PER_RUN"
run pg --url "$DATABASE_URL" --rows 1000 --concurrency 4 --seconds "$SECONDS_PER_RUN"

# 3. A worker drains the backlog the runs above queued: scoring throughput.
backlog=$(psql -h 127.0.0.1 -U postgres -d $DB -Atc "SELECT count(*) FROM log_entries WHERE analyzed_at IS NULL AND analysis_task_id IS NOT NULL AND source = 'bench'")
start=$(date +%s.%N)
LOGCANARY_ADMIN_ADDR=127.0.0.1:9191 "$BIN/analysis-worker" --batch-max 256 --prefetch 512 & pids+=($!)
for _ in $(seq 1 600); do
  left=$(psql -h 127.0.0.1 -U postgres -d $DB -Atc "SELECT count(*) FROM tasks WHERE status NOT IN ('SUCCESS','FAILURE') AND task_name IN ('logs.tasks.analyze_log_entry','logs.tasks.batch_analyze_logs')")
  [[ "$left" == 0 ]] && break
  sleep 1
done
end=$(date +%s.%N)
python3 - "$backlog" "$start" "$end" <<'PY' | tee -a "$out"
import json, sys
n, a, b = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(json.dumps({"bench": "worker_drain", "entries": n, "seconds": round(b - a, 2), "entries_per_second": round(n / (b - a), 1)}))
PY

python3 - "$out" <<'PY' | tee target/bench/summary.txt
import json, sys
r = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    key = d["bench"] + ("_rate" if d.get("target_rate") else "")
    r[key] = d
s, sr, b = r["single"], r.get("single_rate", {}), r["batch"]
amqp, pg = r["amqp_confirmed_publish"], r["pg_multirow_insert"]
print(f"single-entry POST, 64 connections : {s['requests_per_second']:.0f} req/s  p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  errors {s['errors']}")
if sr:
    print(f"single-entry POST at {sr['target_rate']} req/s  : {sr['requests_per_second']:.0f} req/s  p50 {sr['p50_ms']:.1f} ms  p99 {sr['p99_ms']:.1f} ms  errors {sr['errors']}")
if "single_memory_guard" in r:
    m = r["single_memory_guard"]
    print(f"  same, replay guard in memory only : {m['requests_per_second']:.0f} req/s  p50 {m['p50_ms']:.1f} ms  p99 {m['p99_ms']:.1f} ms  (ratio shared/memory {s['requests_per_second'] / m['requests_per_second']:.2f})")
print(f"batch POST, 1000-entry batches    : {b['entries_per_second']:.0f} entries/s  p50 {b['p50_ms']:.0f} ms  p99 {b['p99_ms']:.0f} ms")
vs = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["bench"].endswith("_vs"):
        vs.setdefault(d["bench"][:-3], []).append(d)
def median(rows, field):
    values = sorted(x[field] for x in rows)
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
if "batch" in vs:
    base = median(vs["batch"], "entries_per_second")
    print(f"shipper replica, medians of {len(vs['batch'])} rounds:")
    for key, label in [("batch", "  batch POST, 1000 entries       "), ("otlp", "  OTLP protobuf, 1000 records    "), ("otlp_gzip", "  OTLP protobuf + gzip, 1000     "), ("loki", "  Loki push (snappy), 1000 lines "), ]:
        if key in vs:
            rows = vs[key]
            eps = median(rows, "entries_per_second")
            print(f"{label}: {eps:.0f} entries/s  p50 {median(rows, 'p50_ms'):.0f} ms  p99 {median(rows, 'p99_ms'):.0f} ms  errors {sum(x['errors'] for x in rows)}  (ratio to batch {eps / base:.2f}; runs {', '.join(str(round(x['entries_per_second'])) for x in rows)})")
print(f"RabbitMQ confirmed publishes alone: {amqp['messages_per_second']:.0f} msg/s")
print(f"Postgres entry+task inserts alone : {pg['rows_per_second']:.0f} rows/s")
print(f"ratio single/min(parts)           : {s['requests_per_second'] / min(amqp['messages_per_second'], pg['rows_per_second']):.2f}")
print(f"ratio batch/postgres              : {b['entries_per_second'] / pg['rows_per_second']:.2f}")
if "worker_drain" in r:
    w = r["worker_drain"]
    print(f"analysis-worker drain             : {w['entries_per_second']:.0f} entries/s ({w['entries']} entries)")
PY
