#!/usr/bin/env bash
# Chaos run against a local stack started with `make run` (or
# `PROFILE=debug bash scripts/run-stack.sh`) in another terminal. It posts N signed single
# entries one after another, as a log shipper would (a 5xx is retried, like a shipper's
# retry), while RabbitMQ is stopped for 4 s and started again, the analysis-worker is
# killed with -9 (run-stack restarts it) and Postgres restarts. Then it waits for the
# backlog to drain and counts: every accepted entry must be stored and analysed once, and
# no task may end FAILURE. Exits 1 otherwise.
#
# Usage: scripts/chaos.sh [N (default 3000)]. The restarts need root (rabbitmqctl,
# pg_ctlcluster), as on the development machine; CHAOS_FAULTS=none only posts and counts.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-3000}
API=${API:-http://127.0.0.1:8000}
SECRET=${CHAOS_SECRET:-dev-secret}
DB=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/logcanary}
RUN=chaos-$(date +%s)
sql() { psql "$DB" -Atqc "$1"; }

faults() {
  sleep 3
  echo "chaos: stopping RabbitMQ for 4 s"
  rabbitmqctl -q stop_app
  sleep 4
  rabbitmqctl -q start_app
  echo "chaos: RabbitMQ is back"
  sleep 4
  echo "chaos: kill -9 analysis-worker"
  pkill -9 -f 'target/(release|debug)/analysis-worker' || true
  sleep 4
  echo "chaos: restarting Postgres"
  pg_ctlcluster "$(pg_lsclusters -h | awk 'NR==1 {print $1}')" main restart
  echo "chaos: Postgres is back"
}

fault_pid=""
if [[ "${CHAOS_FAULTS:-all}" != none ]]; then
  faults &
  fault_pid=$!
fi

shapes=("user u%d logged in from web" "GET /api/items/%d 200 in 3 ms" "cache refresh %d finished"
  "disk /dev/sd%d at 91%% capacity" "job %d queued by scheduler" "session %d closed by peer")
accepted=0
retries=0
started=$SECONDS
for ((i = 0; i < N; i++)); do
  # shellcheck disable=SC2059 # the shapes are format strings
  message=$(printf "${shapes[i % ${#shapes[@]}]}" "$i")
  body='{"timestamp":"'$(date -u +%FT%TZ)'","severity":"INFO","message":"'"$message"'","source":"'"$RUN"'"}'
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$API/api/logs/" \
      -H 'Content-Type: application/json' -H "X-HMAC-Signature: $sig" -d "$body" || echo 000)
    if [[ "$code" == 201 ]]; then
      accepted=$((accepted + 1))
      break
    fi
    retries=$((retries + 1))
    sleep 0.5
  done
done
echo "chaos: posted $N in $((SECONDS - started)) s: $accepted accepted, $retries retried requests"
[[ -n "$fault_pid" ]] && wait "$fault_pid"

pending() {
  sql "SELECT count(*) FROM log_entries WHERE source = '$RUN' AND analyzed_at IS NULL" 2>/dev/null || echo -1
}
for _ in $(seq 1 300); do
  [[ "$(pending)" == 0 ]] && break
  sleep 2
done
stored=$(sql "SELECT count(*) FROM log_entries WHERE source = '$RUN'")
analysed=$(sql "SELECT count(*) FROM log_entries WHERE source = '$RUN' AND analyzed_at IS NOT NULL")
failed=$(sql "SELECT count(*) FROM tasks t JOIN log_entries e ON e.analysis_task_id = t.id WHERE e.source = '$RUN' AND t.status = 'FAILURE'")
echo "chaos: $RUN accepted $accepted, stored $stored, analysed $analysed, tasks FAILURE $failed"
if [[ "$stored" != "$accepted" || "$analysed" != "$stored" || "$failed" != 0 ]]; then
  echo "chaos: LOST OR FAILED WORK" >&2
  exit 1
fi
echo "chaos: nothing lost"
