#!/usr/bin/env python3
"""Build labelled anomaly sets for `make eval` from the Loghub-2.0 2k samples.

    python3 scripts/make-labelled-sets.py [--loghub DIR] [--out DIR] [--seed N]

Reads ../shared/data/loghub (research licence: the output goes to .cache/eval/, never
into git) and writes JSONL files of {"timestamp", "severity", "message", "source",
"label"}, one line per log line, in timestamp order:

inject-<base>-<donor>.jsonl
    The whole 2k sample of <base> as the normal stream, with bursts of failure lines
    (lines whose level is ERROR/FATAL or whose text says so: error, failed, exception,
    refused, timed out, ...) from another system <donor> injected at random points after
    the first quarter of the stream. Injected lines are "anomaly", the rest "normal".

holdout-<system>.jsonl
    One system's own sample, with its rare failure templates (ground-truth EventIds with at
    most 2% of the lines whose template text or level says failure) held out of the first
    60% of the stream and replayed at random points in the last 40%. Held-out lines are
    "anomaly", the rest "normal".

Timestamps: the stream starts at 2024-03-01T00:00:00Z and keeps each sample's own order;
gaps between normal lines are exponential (mean 30 s, so 2 000 lines span about 17
hours); an injected burst follows a normal line by a few seconds, its lines 0.1-2 s apart.
Severity is the sample's level column where it has one, else INFO. Deterministic for a
given --seed.
"""

import argparse
import csv
import json
import random
import re
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAILURE = re.compile(
    r"\b(error|errors|fail|failed|failing|failure|failures|exception|fatal|refused|denied|"
    r"timed out|timeout|unable|cannot|can't|could not|couldn't|lost|abort|aborted|panic|"
    r"killed|corrupt|corrupted|unreachable|illegal|unexpected|crash|crashed|broken|"
    r"not found|no such|bad)\b",
    re.IGNORECASE,
)
BAD_LEVELS = {"ERROR", "FATAL", "CRITICAL", "SEVERE", "ERR", "CRIT", "EMERG", "ALERT"}
KNOWN_LEVELS = BAD_LEVELS | {"INFO", "WARN", "WARNING", "DEBUG", "TRACE", "NOTICE"}
START = datetime(2024, 3, 1, tzinfo=timezone.utc)

INJECT = [("HDFS", "Hadoop"), ("Zookeeper", "Linux"), ("OpenSSH", "Thunderbird")]
HOLDOUT = ["OpenStack", "Thunderbird", "Hadoop"]


def read_sample(loghub, system):
    path = loghub / system / f"{system}_2k.log_structured_corrected.csv"
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        level = (r.get("Level") or "").strip().upper()
        out.append(
            {
                "message": r["Content"],
                "severity": level if level in KNOWN_LEVELS else "INFO",
                "event": r["EventId"],
                "template": r["EventTemplate"],
                "source": system,
            }
        )
    return out


def is_failure(line):
    return line["severity"] in BAD_LEVELS or bool(FAILURE.search(line["message"]))


def stamp(t):
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def emit(path, timed):
    """timed: list of (datetime, line, label) in any order; written sorted by time."""
    timed.sort(key=lambda x: x[0])
    with open(path, "w", encoding="utf-8") as f:
        for t, line, label in timed:
            f.write(
                json.dumps(
                    {
                        "timestamp": stamp(t),
                        "severity": line["severity"],
                        "message": line["message"],
                        "source": line["source"],
                        "label": label,
                    }
                )
                + "\n"
            )
    anomalies = sum(1 for _, _, label in timed if label == "anomaly")
    print(f"{path}: {len(timed)} lines, {anomalies} anomalies", file=sys.stderr)


def normal_times(rng, n):
    t = START
    times = []
    for _ in range(n):
        t += timedelta(seconds=rng.expovariate(1 / 30.0))
        times.append(t)
    return times


def make_inject(loghub, out, base_name, donor_name, rng, bursts=8):
    base = read_sample(loghub, base_name)
    donor = [line for line in read_sample(loghub, donor_name) if is_failure(line)]
    if not donor:
        raise SystemExit(f"{donor_name} has no failure lines")
    times = normal_times(rng, len(base))
    timed = [(t, line, "normal") for t, line in zip(times, base)]
    # Distinct anchor points after the first quarter; one burst after each.
    anchors = sorted(rng.sample(range(len(base) // 4, len(base) - 1), bursts))
    for anchor in anchors:
        size = rng.randint(5, 15)
        start = rng.randrange(0, max(1, len(donor) - size))
        t = times[anchor] + timedelta(seconds=rng.uniform(1, 5))
        for line in donor[start : start + size]:
            timed.append((t, line, "anomaly"))
            t += timedelta(seconds=rng.uniform(0.1, 2.0))
    emit(out / f"inject-{base_name.lower()}-{donor_name.lower()}.jsonl", timed)


def make_holdout(loghub, out, system, rng):
    lines = read_sample(loghub, system)
    counts = Counter(line["event"] for line in lines)
    limit = max(1, len(lines) // 50)
    held = {
        event
        for event, n in counts.items()
        if n <= limit
        and any(
            line["event"] == event
            and (line["severity"] in BAD_LEVELS or FAILURE.search(line["template"]))
            for line in lines
        )
    }
    kept = [line for line in lines if line["event"] not in held]
    out_lines = [line for line in lines if line["event"] in held]
    times = normal_times(rng, len(kept))
    timed = [(t, line, "normal") for t, line in zip(times, kept)]
    cut = int(len(kept) * 0.6)
    span = (times[cut], times[-1])
    for line in out_lines:
        t = span[0] + (span[1] - span[0]) * rng.random()
        timed.append((t, line, "anomaly"))
    print(f"{system}: held out {len(held)} templates", file=sys.stderr)
    emit(out / f"holdout-{system.lower()}.jsonl", timed)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loghub", type=Path, default=ROOT.parent / "shared" / "data" / "loghub")
    p.add_argument("--out", type=Path, default=ROOT / ".cache" / "eval")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    if not args.loghub.is_dir():
        raise SystemExit(f"Loghub samples not found at {args.loghub} (pass --loghub DIR)")
    args.out.mkdir(parents=True, exist_ok=True)
    for base, donor in INJECT:
        make_inject(args.loghub, args.out, base, donor, random.Random(f"{args.seed}-{base}-{donor}"))
    for system in HOLDOUT:
        make_holdout(args.loghub, args.out, system, random.Random(f"{args.seed}-{system}"))


if __name__ == "__main__":
    main()
