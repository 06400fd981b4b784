#!/usr/bin/env bash
# The real log shippers the shipper-protocol tests drive (tests/tests/e2e/shippers.rs):
#  - a venv, .cache/shippers-venv, with the OpenTelemetry Python SDK and its OTLP/HTTP
#    exporter, python-logging-loki (a Loki push client) and the official Elasticsearch
#    client (its helpers.bulk), at pinned versions;
#  - syslog-ng from Debian (syslog-ng-core, syslog-ng-mod-http), the "I only have log files"
#    shipper: the tests run their own instance with their own configuration; the package's
#    system service is not started.
# Idempotent: does nothing when everything is in place at the pinned versions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "fetch-shippers: $*"; }
die() { echo "fetch-shippers: error: $*" >&2; exit 1; }
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"; fi
}

VENV=.cache/shippers-venv
# Exact versions. The Elasticsearch client is the 8 line: the root document logcanary
# answers says 8.x, which is what the 8 clients and Beats expect.
PINS=(
  opentelemetry-sdk==1.45.2
  opentelemetry-exporter-otlp-proto-http==1.45.2
  python-logging-loki==0.3.1
  elasticsearch==8.19.3
)
pins_installed() {
  [[ -x $VENV/bin/python ]] && "$VENV/bin/python" - "${PINS[@]}" 2>/dev/null <<'PY'
import importlib.metadata, sys
pins = (pin.split("==") for pin in sys.argv[1:])
sys.exit(any(importlib.metadata.version(name) != version for name, version in pins))
PY
}
if pins_installed; then
  say "ok      $VENV"
else
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" \
    || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
  pins_installed || die "$VENV does not have the pinned versions after pip install: ${PINS[*]}"
  say "installed ${PINS[*]} in $VENV"
fi

PACKAGES=(syslog-ng-core syslog-ng-mod-http)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  # Keep the package's own syslog daemon from starting (this is no syslog host): a
  # policy-rc.d answering 101 forbids service starts during the install.
  policy=/usr/sbin/policy-rc.d
  had_policy=false
  [[ -e $policy ]] && had_policy=true
  $had_policy || { printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null; as_root chmod +x "$policy"; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { $had_policy || as_root rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
  $had_policy || as_root rm -f "$policy"
fi
command -v syslog-ng >/dev/null 2>&1 || die "syslog-ng is not on PATH after installing ${PACKAGES[*]}"
say "ok      syslog-ng $(syslog-ng --version 2>/dev/null | head -1 | awk '{print $2}')"
