#!/usr/bin/env bash
# The static checkers the deploy tests run (tests/tests/deploy.rs): kubernetes-validate
# (Kubernetes OpenAPI schemas, offline) in a venv under .cache/, with PyYAML and jsonschema
# that the CRD checks use. promtool and kubectl come from Debian (scripts/services.sh).
# Idempotent: does nothing when the venv already has the tool.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.cache/validators-venv
VERSION=1.37.0
if [[ -x "$VENV/bin/kubernetes-validate" ]] && "$VENV/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "fetch-validators: ok      $VENV"
  exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "fetch-validators: error: python3 is required" >&2; exit 1; }
python3 -m venv "$VENV" || { echo "fetch-validators: error: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
"$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VERSION" jsonschema PyYAML
echo "fetch-validators: installed kubernetes-validate $VERSION in $VENV"
