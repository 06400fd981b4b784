#!/usr/bin/env bash
# Start the whole stack locally in the foreground: migrate, then every binary, each with
# its own admin port, each supervised: one that dies is restarted with backoff (1 s,
# doubling to 30 s; back to 1 s after 30 s of running) and a log line, as a container
# runtime's restart policy or Kubernetes would. Ctrl-C (or SIGTERM) stops them all
# gracefully.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROFILE=${PROFILE:-release}
BIN="target/$PROFILE"
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/logcanary}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
# The development key may do everything (ingest, read, operate, admin); see API.md.
export LOGCANARY_HMAC_KEYS=${LOGCANARY_HMAC_KEYS:-default@ingest+read+operate+admin:dev-secret}
export LOGCANARY_LOG_FORMAT=${LOGCANARY_LOG_FORMAT:-pretty}
# The log shippers' development API token (ingest only; refused in production). Only its
# SHA-256 is configured; `ingest-api create-token --name NAME` makes real ones.
DEV_SHIPPER_TOKEN=lc_dev-shipper-token
export LOGCANARY_API_TOKENS=${LOGCANARY_API_TOKENS:-dev@ingest:$(printf '%s' "$DEV_SHIPPER_TOKEN" | sha256sum | cut -d' ' -f1)}

"$BIN/ingest-api" migrate

# supervise NAME COMMAND...: runs COMMAND, and again whenever it exits, until this
# supervisor gets SIGTERM (passed on to the command, whose exit it then waits for).
supervise() {
  local name=$1 child="" backoff=1 started rc
  shift
  stopping=0
  trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null || true' TERM
  while :; do
    started=$SECONDS
    "$@" &
    child=$!
    rc=0
    wait "$child" || rc=$?
    if [ "$stopping" = 1 ]; then
      wait "$child" 2>/dev/null || true
      exit 0
    fi
    if (( SECONDS - started >= 30 )); then backoff=1; fi
    echo "run-stack: $name (pid $child) exited with status $rc; restarting it in ${backoff}s" >&2
    sleep "$backoff" &
    wait $! || true
    [ "$stopping" = 1 ] && exit 0
    backoff=$(( backoff < 16 ? backoff * 2 : 30 ))
  done
}

pids=()
stop() {
  echo "run-stack: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop INT TERM

# The scoring workers return the model's freed run buffers to the OS (see deploy/Dockerfile).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-131072}
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
supervise analysis-worker env LOGCANARY_ADMIN_ADDR=127.0.0.1:9101 \
  LOGCANARY_QUEUES="${LOGCANARY_QUEUES:-analysis,batch_processing,maintenance}" \
  "$BIN/analysis-worker" & pids+=($!)
supervise scheduler env LOGCANARY_ADMIN_ADDR=127.0.0.1:9104 "$BIN/scheduler" & pids+=($!)
supervise realtime-worker env LOGCANARY_ADMIN_ADDR=127.0.0.1:9102 "$BIN/realtime-worker" & pids+=($!)
supervise ingest-api env LOGCANARY_ADMIN_ADDR=127.0.0.1:9100 "$BIN/ingest-api" & pids+=($!)
# Alerts: set LOGCANARY_SMTP_URL + LOGCANARY_ALERT_EMAILS and/or LOGCANARY_WEBHOOK_URLS first.
supervise notifier env LOGCANARY_ADMIN_ADDR=127.0.0.1:9103 "$BIN/notifier" & pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9100/readyz >/dev/null 2>&1 && break
  sleep 0.2
done

cat <<MSG

logcanary is running:
  API         http://127.0.0.1:8000/api/   (OpenAPI: /api/openapi.json)
  admin       ingest-api :9100, analysis-worker :9101, notifier :9103, scheduler :9104 (/livez /readyz /metrics)
  alerts      email $([ -n "${LOGCANARY_SMTP_URL:-}" ] && echo on || echo 'off (set LOGCANARY_SMTP_URL)'), webhooks $([ -n "${LOGCANARY_WEBHOOK_URLS:-}" ] && echo on || echo 'off (set LOGCANARY_WEBHOOK_URLS)'), Alertmanager $([ -n "${LOGCANARY_ALERTMANAGER_URLS:-}" ] && echo on || echo 'off (set LOGCANARY_ALERTMANAGER_URLS)'); GET /api/alerts/
  HMAC key    LOGCANARY_HMAC_KEYS=$LOGCANARY_HMAC_KEYS
  shippers    API token $DEV_SHIPPER_TOKEN (ingest): OTLP http://127.0.0.1:8000/v1/logs,
              Loki http://127.0.0.1:8000/loki/api/v1/push, Elasticsearch http://127.0.0.1:8000 (README)
  reads       open (development, no LOGCANARY_READ_TOKEN); production needs a credential

Try it (another terminal):
  body='{"timestamp":"'\$(date -u +%FT%TZ)'","severity":"ERROR","message":"Database connection failed after 3 retries"}'
  sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac dev-secret | sed 's/^.* //')
  curl -s -X POST http://127.0.0.1:8000/api/logs/ -H 'Content-Type: application/json' -H "X-HMAC-Signature: \$sig" -d "\$body"

Periodic tasks (the scheduler fires them; the worker runs them). Endpoints beyond the old
API need the request-bound signature (method, path, query, time and body; API.md):
  curl -s http://127.0.0.1:8000/api/periodic-tasks/
  body='{"name":"clean-up every minute","task":"logs.tasks.cleanup_old_results","interval":{"every":1,"period":"minutes"}}'
  t=\$(date +%s)
  mac=\$(printf 'v2\\nPOST\\n/api/periodic-tasks/\\n\\n%s\\n%s' "\$t" "\$body" | openssl dgst -sha256 -hmac dev-secret | sed 's/^.* //')
  curl -s -X POST http://127.0.0.1:8000/api/periodic-tasks/ -H 'Content-Type: application/json' -H "X-HMAC-Signature: t=\$t,v2=\$mac" -d "\$body"

A process that dies is restarted (see the run-stack lines). Ctrl-C stops everything.
MSG
wait
