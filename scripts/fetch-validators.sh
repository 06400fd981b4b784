#!/usr/bin/env bash
# The static checkers the deploy tests run (tests/tests/e2e/deploy.rs), under .cache/:
#  - a venv with kubernetes-validate (Kubernetes OpenAPI schemas, offline), PyYAML, jsonschema
#    and the cloudcoil models generated from KEDA's and the Prometheus Operator's CRDs, which
#    scripts/validate-crds.py turns into strict schemas for the custom resources;
#  - Debian's kubectl (package kubernetes-client: kubectl 1.20 with kustomize v2.0.3) in
#    .cache/kubectl-debian/, extracted from the .deb without installing it (it would conflict
#    with another /usr/bin/kubectl): the overlays must render with it as well as with the
#    kubectl on PATH (kustomize v5);
#  - a venv of its own with schemathesis, which tests/tests/e2e/schemathesis.rs runs against a
#    live ingest-api's /api/openapi.json (signing each request with tests/schemathesis/hooks.py).
# promtool and the PATH kubectl come from Debian packages (scripts/services.sh).
# Idempotent: does nothing when everything is in place at the pinned versions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "fetch-validators: $*"; }
die() { echo "fetch-validators: error: $*" >&2; exit 1; }
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"; fi
}

# --- the validators venv ---------------------------------------------------------------
VENV=.cache/validators-venv
# Exact versions. cloudcoil-models-keda 2.16.1.0 is the newest that installs on Python 3.11;
# cloudcoil and pydantic shape the generated schemas, so they are pinned too.
PINS=(
  kubernetes-validate==1.37.0
  jsonschema==4.26.0
  PyYAML==6.0.4
  cloudcoil==0.6.0
  pydantic==2.14.4
  cloudcoil-models-keda==2.16.1.0
  cloudcoil-models-prometheus-operator==0.80.1.0
)
pins_installed() {
  [[ -x $VENV/bin/python ]] && "$VENV/bin/python" - "${PINS[@]}" 2>/dev/null <<'EOF'
import importlib.metadata, sys
pins = (pin.split("==") for pin in sys.argv[1:])
sys.exit(any(importlib.metadata.version(name) != version for name, version in pins))
EOF
}
if pins_installed; then
  say "ok      $VENV"
else
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" \
    || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
  pins_installed || die "$VENV does not have the pinned versions after pip install: ${PINS[*]}"
  say "installed ${PINS[*]} in $VENV"
fi

# --- schemathesis, in a venv of its own ------------------------------------------------
# Apart from the validators: it brings its own hypothesis, requests and jsonschema stack,
# which must not move the validators' pins (or be moved by them).
ST_VENV=.cache/schemathesis-venv
# Exact versions. schemathesis 4.32.5 is the newest release (it installs on Python 3.11);
# hypothesis generates the cases, jsonschema_rs validates the responses and requests is the
# transport the signing hook plugs into (an auth callable on the prepared request), so they
# are pinned too.
ST_PINS=(
  schemathesis==4.32.5
  hypothesis==6.170.17
  jsonschema_rs==0.60.3
  requests==2.34.2
)
st_pins_installed() {
  [[ -x $ST_VENV/bin/python && -x $ST_VENV/bin/schemathesis ]] \
    && "$ST_VENV/bin/python" - "${ST_PINS[@]}" 2>/dev/null <<'EOF'
import importlib.metadata, sys
pins = (pin.split("==") for pin in sys.argv[1:])
sys.exit(any(importlib.metadata.version(name) != version for name, version in pins))
EOF
}
if st_pins_installed; then
  say "ok      $ST_VENV"
else
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  [[ -x $ST_VENV/bin/python ]] || python3 -m venv "$ST_VENV" \
    || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check "${ST_PINS[@]}"
  st_pins_installed || die "$ST_VENV does not have the pinned versions after pip install: ${ST_PINS[*]}"
  say "installed ${ST_PINS[*]} in $ST_VENV"
fi

# --- Debian's kubectl (kustomize v2.0.3) -------------------------------------------------
KUBECTL_DIR=.cache/kubectl-debian
if [[ -x $KUBECTL_DIR/kubectl ]] && "$KUBECTL_DIR/kubectl" version --client >/dev/null 2>&1; then
  say "ok      $KUBECTL_DIR/kubectl ($(cat "$KUBECTL_DIR/PACKAGE" 2>/dev/null || echo '?'))"
else
  why="the deploy tests also render the overlays with Debian bookworm's kubectl"
  command -v apt-get >/dev/null 2>&1 \
    || die "apt-get not found: $why (package kubernetes-client, fetched with 'apt-get download'), which needs a Debian machine"
  command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: $why, extracted from its .deb"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download kubernetes-client); then
    say "apt-get download kubernetes-client failed; running apt-get update and retrying"
    as_root apt-get update -qq || die "apt-get update failed: cannot fetch kubernetes-client ($why)"
    (cd "$tmp" && apt-get download kubernetes-client) \
      || die "apt-get download kubernetes-client failed (see above): $why; the package comes from Debian's main archive (bookworm: kubectl 1.20)"
  fi
  deb=$(echo "$tmp"/kubernetes-client_*.deb)
  [[ -f $deb ]] || die "apt-get download left no kubernetes-client_*.deb in $tmp"
  dpkg-deb -x "$deb" "$tmp/out" || die "dpkg-deb -x $deb failed"
  [[ -x $tmp/out/usr/bin/kubectl ]] || die "$(basename "$deb") has no usr/bin/kubectl"
  "$tmp/out/usr/bin/kubectl" version --client >/dev/null || die "the extracted kubectl does not run"
  mkdir -p "$KUBECTL_DIR"
  cp "$tmp/out/usr/bin/kubectl" "$KUBECTL_DIR/kubectl.new"
  mv "$KUBECTL_DIR/kubectl.new" "$KUBECTL_DIR/kubectl"
  basename "$deb" .deb >"$KUBECTL_DIR/PACKAGE"
  say "extracted $KUBECTL_DIR/kubectl from $(basename "$deb")"
fi
