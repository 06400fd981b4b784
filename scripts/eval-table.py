#!/usr/bin/env python3
"""Format scripts/eval-all.sh's rows (set, then four JSON results) as a Markdown table."""
import json
import sys

fb = sys.argv[1]
# Sets not used to settle weights, comma-separated; "all" for a directory of sets that were
# all built after the weights were settled.
not_tuned = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[2] else set()
rows = [line.rstrip("\n").split("\t") for line in sys.stdin if line.strip()]


def pr(r, used=False):
    extra = f", {r['feedback_used']} answers" if used else ""
    return f"{r['f1']:.3f} ({r['precision']:.2f}/{r['recall']:.2f}{extra})"


print(f"| set | ERROR+ F1 | new-template F1 | scorer F1 (P/R) | FEEDBACK={fb} F1 (P/R) | beats both baselines |")
print("|---|---|---|---|---|---|")
groups = {"tuned on": [], "not tuned on": []}
for name, *cols in rows:
    sev, new, none, withfb = (json.loads(c) for c in cols)
    ok = "yes" if none["f1"] >= max(sev["f1"], new["f1"]) else "**no**"
    group = "not tuned on" if name in not_tuned or "all" in not_tuned else "tuned on"
    groups[group].append((sev["f1"], new["f1"], none["f1"], withfb["f1"]))
    mark = " (not tuned on)" if group == "not tuned on" else ""
    print(f"| {name}{mark} | {sev['f1']:.3f} | {new['f1']:.3f} | {pr(none)} | {pr(withfb, True)} | {ok} |")
for group, vals in groups.items():
    if vals:
        m = [sum(v[i] for v in vals) / len(vals) for i in range(4)]
        print(f"| **mean, {group}** ({len(vals)} sets) | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[3]:.3f} | |")
