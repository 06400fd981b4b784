#!/usr/bin/env python3
"""Validate custom resources against strict JSON schemas generated from the upstream CRDs.

kubernetes-validate knows only the built-in kinds. For KEDA's and the Prometheus Operator's
kinds this script takes the pydantic models that cloudcoil generates from the projects'
CRDs (cloudcoil-models-keda, cloudcoil-models-prometheus-operator, pinned in
scripts/fetch-validators.sh), turns each into a JSON schema and makes it strict: the models
accept unknown fields, so every object schema that lists its fields gets
`"additionalProperties": false` (maps such as labels or a trigger's metadata keep their own
`additionalProperties`). Objects are then checked with jsonschema, Draft 2020-12.

Usage (from the validators venv, .cache/validators-venv/bin/python):
    validate-crds.py < objects.json     a JSON array of objects; prints `ok KIND NAME` or
                                        `FAIL KIND NAME: PATH: why`; exits 1 on any failure
    validate-crds.py --schema KIND      print the strict schema of KIND

Importing the models takes seconds, so the schemas are cached under .cache/crd-schemas/,
keyed by this file and the installed package versions.
"""

import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from pathlib import Path

from jsonschema import Draft202012Validator

# kind -> (module, class) of its cloudcoil model.
MODELS = {
    "ScaledObject": ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    "TriggerAuthentication": ("cloudcoil.models.keda.v1alpha1", "TriggerAuthentication"),
    "PodMonitor": ("cloudcoil.models.prometheus_operator.v1", "PodMonitor"),
    "ServiceMonitor": ("cloudcoil.models.prometheus_operator.v1", "ServiceMonitor"),
}
# The packages whose versions shape the schemas.
PACKAGES = ["cloudcoil", "cloudcoil-models-keda", "cloudcoil-models-prometheus-operator", "pydantic"]
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "crd-schemas"


def strict(schema):
    """Forbid unknown fields in every object schema below `schema` that lists its fields."""
    if not isinstance(schema, dict):
        return schema
    # An empty `properties` is a free-form object (e.g. managedFields' FieldsV1): left open.
    if schema.get("properties") and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for key in ("properties", "$defs", "patternProperties"):
        for sub in schema.get(key, {}).values():
            strict(sub)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key, []):
            strict(sub)
    for key in ("items", "additionalProperties", "not"):
        strict(schema.get(key))
    return schema


def generate():
    """kind -> strict schema, from the models (slow: imports them)."""
    import importlib

    schemas = {}
    for kind, (module, name) in MODELS.items():
        model = getattr(importlib.import_module(module), name)
        schema = strict(model.model_json_schema(by_alias=True))
        # The models default apiVersion and kind; a manifest has to spell them out.
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        Draft202012Validator.check_schema(schema)
        schemas[kind] = schema
    return schemas


def schemas():
    """kind -> strict schema, from the cache when this file and the packages are unchanged."""
    key = hashlib.sha256(Path(__file__).read_bytes())
    for package in PACKAGES:
        key.update(f"{package}=={importlib.metadata.version(package)}".encode())
    path = CACHE / f"{key.hexdigest()[:16]}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = generate()
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob("*.json"):
        stale.unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=CACHE, delete=False) as tmp:
        json.dump(result, tmp)
    os.replace(tmp.name, path)
    return result


def reasons(error):
    """The most specific errors behind `error`. The models make every optional field
    `anyOf: [<its schema>, null]`; when only one branch is not the null one, its own errors
    say what is wrong ("'10' is not of type 'integer'" rather than "not valid under any of
    the given schemas")."""
    branches = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    real = [subs for subs in branches.values() if not all(is_null_branch(s) for s in subs)]
    if len(real) != 1:
        return [error]
    return [leaf for sub in real[0] for leaf in reasons(sub)]


def is_null_branch(error):
    return error.validator == "type" and error.validator_value == "null"


def problems(doc, schema):
    """One line per violation: its JSON path and why."""
    errors = Draft202012Validator(schema).iter_errors(doc)
    return sorted(f"{e.json_path}: {e.message}" for error in errors for e in reasons(error))


def main(argv):
    if len(argv) == 3 and argv[1] == "--schema" and argv[2] in MODELS:
        json.dump(schemas()[argv[2]], sys.stdout, indent=2)
        print()
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    all_schemas = schemas()
    docs = json.load(sys.stdin)
    failed = False
    for doc in docs:
        kind = doc.get("kind")
        name = (doc.get("metadata") or {}).get("name")
        if kind not in all_schemas:
            print(f"FAIL {kind} {name}: no schema for this kind (known: {', '.join(MODELS)})")
            failed = True
            continue
        found = problems(doc, all_schemas[kind])
        for line in found:
            print(f"FAIL {kind} {name}: {line}")
        if not found:
            print(f"ok {kind} {name}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
