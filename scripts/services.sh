#!/usr/bin/env bash
# Make sure Postgres and RabbitMQ are installed, running on 127.0.0.1 and reachable the
# way logcanary's defaults expect (Postgres: user postgres, trust auth on loopback;
# RabbitMQ: guest/guest). Idempotent: does nothing when both already answer.
set -euo pipefail

say() { echo "services: $*"; }
die() { echo "services: error: $*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"; fi
}

# Debian packages that building and running need; installed only if missing.
PACKAGES=(libpq-dev postgresql postgresql-client rabbitmq-server python3 python3-pip python3-venv curl ca-certificates prometheus prometheus-alertmanager chromium)
# kubectl (for `kubectl kustomize` in the deploy tests): Debian's kubernetes-client, unless
# another package already provides one (they conflict on /usr/bin/kubectl).
command -v kubectl >/dev/null 2>&1 || PACKAGES+=(kubernetes-client)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  die "$what did not start listening on 127.0.0.1:$port"
}

# --- Postgres ---------------------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$version" ]] || die "postgresql is installed but has no cluster in /etc/postgresql"
  say "starting Postgres $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 Postgres
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh Debian install asks for passwords on 127.0.0.1; the local defaults use trust
  # on loopback only (never do this on a shared host).
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$hba" ]] || die "cannot connect to Postgres as postgres@127.0.0.1 and found no pg_hba.conf"
  say "allowing trust auth on loopback in $hba"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(dirname "$hba")")")" main reload
  psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null \
    || die "still cannot connect to Postgres as postgres@127.0.0.1"
fi

# --- RabbitMQ ---------------------------------------------------------------------------
if ! port_open 5672; then
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port 5672 RabbitMQ
  # The port opens before the broker accepts guests; wait until it does.
  for _ in $(seq 1 60); do
    rabbitmq-diagnostics -q check_running >/dev/null 2>&1 && break
    sleep 1
  done
fi

say "Postgres and RabbitMQ are up on 127.0.0.1"
