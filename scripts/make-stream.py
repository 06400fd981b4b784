#!/usr/bin/env python3
"""Build the realistic benchmark stream: the 13 Loghub 2k samples interleaved.

    python3 scripts/make-stream.py [--loghub DIR] [--out FILE]

Reads ../shared/data/loghub (research licence: the output goes to .cache/bench/, never
into git) and writes one JSON object per line, {"severity", "message", "source"}, the
samples taken round-robin (one line of each system in turn, in each sample's own order),
so consecutive lines come from different systems as they do when many services ship to
one endpoint. Severity is the sample's level column mapped to the API's five levels
(WARN -> WARNING, FATAL/SEVERE -> CRITICAL, ...), INFO where a sample has none.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ["Apache", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Thunderbird", "Zookeeper"]
LEVELS = {
    "DEBUG": "DEBUG", "TRACE": "DEBUG",
    "INFO": "INFO", "NOTICE": "INFO",
    "WARN": "WARNING", "WARNING": "WARNING",
    "ERROR": "ERROR", "ERR": "ERROR",
    "FATAL": "CRITICAL", "CRITICAL": "CRITICAL", "SEVERE": "CRITICAL", "CRIT": "CRITICAL",
    "EMERG": "CRITICAL", "ALERT": "CRITICAL",
}


def read(loghub, system):
    path = loghub / system / f"{system}_2k.log_structured_corrected.csv"
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return [
            {
                "severity": LEVELS.get((r.get("Level") or "").strip().upper(), "INFO"),
                "message": r["Content"],
                "source": system,
            }
            for r in csv.DictReader(f)
            if r.get("Content", "").strip()
        ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loghub", type=Path, default=ROOT.parent / "shared" / "data" / "loghub")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "loghub-stream.jsonl")
    args = ap.parse_args()
    if not args.loghub.is_dir():
        sys.exit(f"make-stream: {args.loghub} is absent; the realistic stream needs the Loghub samples")
    samples = [read(args.loghub, s) for s in SYSTEMS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for i in range(max(map(len, samples))):
            for sample in samples:
                if i < len(sample):
                    f.write(json.dumps(sample[i]) + "\n")
                    n += 1
    print(f"make-stream: {args.out}: {n} lines from {len(SYSTEMS)} systems", file=sys.stderr)


if __name__ == "__main__":
    main()
