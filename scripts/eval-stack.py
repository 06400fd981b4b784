#!/usr/bin/env python3
"""Replay a labelled JSONL file through a running logcanary stack, as a client would.

The file is `make eval`'s input (`timestamp`, `severity`, `message`, optional `source`,
`label`). Its lines are sent in time order, 64 to a `POST /api/batch-analysis/` (v2
signature), each batch after the previous one's task has finished, as `make eval` feeds
`Scorer::score_batch`. Their times are moved by whole 10-minute windows (so that the
scorer's presence windows fall as in `make eval`) to end less than ten minutes ago. With
`--concurrent`, every batch is posted at once and the workers take them as they come (two
at a time by default), as a busy shipper would.

Then each entry's verdict is read back with `GET /api/logs/` (what a user sees, after any
re-scoring learning did) and scored against the labels. The last line printed is the JSON
result, with the same `precision`, `recall`, `f1` as `make eval`'s, plus `lines`,
`anomalies`, `flagged` and `seconds`. Standard library only.

With `--feedback N`, `make eval FEEDBACK=n`'s simulated operator answers the top of
`GET /api/review/` through `POST /api/logs/{id}/feedback/` (see `Operator`); `--dump FILE`
writes each entry as read back, with its label; `--trace` prints the operator's answers.

Usage: eval-stack.py INPUT.jsonl --url http://127.0.0.1:8000 [--concurrent | --feedback N]
       [--dump FILE] [--trace]
Posts are signed with LOGCANARY_EVAL_SECRET (default dev-secret, the development key),
key id LOGCANARY_EVAL_KEY_ID (default `default`); reads send LOGCANARY_EVAL_READ_TOKEN as
a bearer token when it is set (the stack's LOGCANARY_READ_TOKEN), else nothing (reads are
open in development).
"""

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BATCH = 64
WINDOW_S = 600
# The review queue's window: `GET /api/review/`'s default and largest `hours`.
REVIEW_MIN_S, REVIEW_MAX_S = 24 * 3600, 720 * 3600

# The API takes the five level names; a file's other spellings map as `make eval` reads
# them (the detector's `Severity::WORDS`); anything else is INFO.
LEVELS = {
    **dict.fromkeys(["TRACE", "DEBUG", "FINE", "FINER", "FINEST"], "DEBUG"),
    **dict.fromkeys(["WARN", "WARNING"], "WARNING"),
    **dict.fromkeys(["ERR", "ERROR", "SEVERE"], "ERROR"),
    **dict.fromkeys(["CRIT", "CRITICAL", "FATAL", "FAILURE", "ALERT", "EMERG", "EMERGENCY", "PANIC"], "CRITICAL"),
}


def parse_time(value):
    """A `timestamp` as make eval reads the common cases: epoch seconds or milliseconds
    (a number or a string of digits), or RFC 3339 with `T` or a space (no zone: UTC)."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        n = float(value)
        return n if n < 1e11 else n / 1000.0
    text = value.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def read_records(path):
    records = []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            label = rec["label"].lower()
            if label not in ("normal", "anomaly", "anomalous"):
                sys.exit(f"{path}:{n}: label must be normal|anomaly, got {rec['label']!r}")
            records.append((parse_time(rec["timestamp"]), n, rec, label != "normal"))
    records.sort(key=lambda r: (r[0], r[1]))
    return records


class Client:
    def __init__(self, url, key_id, secret, read_token):
        self.url, self.key_id, self.secret = url.rstrip("/"), key_id, secret.encode()
        self.read_token = read_token

    def request(self, method, path, query="", body=None):
        data = b"" if body is None else json.dumps(body).encode()
        if method == "GET":
            # Reads poll: a bearer token (a signature may be used once only).
            headers = {"Authorization": f"Bearer {self.read_token}"} if self.read_token else {}
        else:
            t = str(int(time.time()))
            canonical = b"\n".join([b"v2", method.encode(), path.encode(), query.encode(), t.encode(), data])
            mac = hmac.new(self.secret, canonical, hashlib.sha256).hexdigest()
            headers = {"X-HMAC-Signature": f"t={t},v2={mac}", "X-HMAC-Key-Id": self.key_id}
        if body is not None:
            headers["Content-Type"] = "application/json"
        full = self.url + path + (f"?{query}" if query else "")
        req = urllib.request.Request(full, data=data if body is not None else None, headers=headers, method=method)
        for attempt in range(20):
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as e:
                if e.code == 503 and attempt < 19:
                    time.sleep(0.5)
                    continue
                sys.exit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')[:500]}")
        raise AssertionError("unreachable")

    def wait_task(self, task_id, timeout_s=600):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            status = self.request("GET", f"/api/task-status/{task_id}/")["status"]
            if status in ("SUCCESS", "FAILURE"):
                return status
            time.sleep(0.05)
        sys.exit(f"task {task_id} did not finish within {timeout_s} s")


class Operator:
    """`make eval FEEDBACK=n`'s simulated operator, through the API: after batch `b` of
    `B` it may have given `ceil(n x b / B)` answers in all; each answers the top of
    `GET /api/review/` not answered yet, with the majority label of that template's lines
    sent so far, through `POST /api/logs/{sample}/feedback/`. It reads the queue over the
    time since it last looked (log time), at least a day, at most 720 hours."""

    def __init__(self, client, budget, batches, trace=False):
        self.client, self.budget, self.batches, self.trace = client, budget, batches, trace
        self.labels = {}  # template id -> [normal lines, anomalous lines]
        self.answered, self.used, self.last_look = set(), 0, None

    def observe(self, ids, anomalous):
        for entry_id, is_anomaly in zip(ids, anomalous):
            template = self.client.request("GET", f"/api/logs/{entry_id}/")["template_id"]
            self.labels.setdefault(template, [0, 0])[int(is_anomaly)] += 1

    def answer(self, batch, latest):
        allowed = -(-self.budget * min(batch, self.batches) // self.batches)
        since_last = 0 if self.last_look is None else latest - self.last_look
        window = min(max(since_last, REVIEW_MIN_S), REVIEW_MAX_S)
        self.last_look = latest
        hours = min(max(-(-(time.time() - latest + window) // 3600), 1), REVIEW_MAX_S // 3600)
        # The endpoint keeps each (hours, limit) answer for 10 s, and a replay posts hours
        # of log in seconds: each batch's look asks with a limit of its own, so that it
        # reads the queue as it is after the batch (an answer clears the cache anyway).
        limit = 200 - batch % 100
        while self.used < allowed:
            queue = self.client.request("GET", "/api/review/", urllib.parse.urlencode({"hours": int(hours), "limit": limit}))
            top = next((q for q in queue["results"] if q["template_id"] not in self.answered and q["template_id"] in self.labels), None)
            if top is None:
                if self.trace:
                    left = [(q["template_id"], q["template"][:50]) for q in queue["results"] if q["template_id"] not in self.answered]
                    print(f"OPERATOR no question ({len(queue['results'])} in the queue, unanswered: {left})", file=sys.stderr)
                return
            normals, anomalies = self.labels[top["template_id"]]
            label = "anomaly" if anomalies > normals else "normal"
            self.client.request("POST", f"/api/logs/{top['sample_log_entry_id']}/feedback/", body={"label": label})
            if self.trace:
                print(f'OPERATOR {label} (priority {top["priority"]:.2f}, {top["recent_lines"]} lines in the window) on {top["template"]}', file=sys.stderr)
            self.answered.add(top["template_id"])
            self.used += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--concurrent", action="store_true", help="post every batch at once")
    ap.add_argument("--dump", help="write each entry as read back, with its label, to this JSONL file")
    ap.add_argument("--feedback", type=int, default=0, help="answers the simulated operator gives (in order only)")
    ap.add_argument("--trace", action="store_true", help="print each answer to stderr, as make eval's --trace")
    args = ap.parse_args()
    client = Client(
        args.url,
        os.environ.get("LOGCANARY_EVAL_KEY_ID", "default"),
        os.environ.get("LOGCANARY_EVAL_SECRET", "dev-secret"),
        os.environ.get("LOGCANARY_EVAL_READ_TOKEN"),
    )
    records = read_records(args.input)
    if not records:
        sys.exit(f"{args.input}: no records")
    # Whole presence windows (10 minutes), so that the scorer's windows fall as they do in
    # `make eval`, and the last line at most one window old: the review queue and the
    # feedback re-score count back from the server's clock.
    shift = (time.time() - records[-1][0]) // WINDOW_S * WINDOW_S
    if args.feedback and args.concurrent:
        sys.exit("--feedback needs the batches in order")
    operator = Operator(client, args.feedback, -(-len(records) // BATCH), args.trace)
    started = time.time()
    labels, tasks, failed = {}, [], 0
    for i in range(0, len(records), BATCH):
        chunk = records[i : i + BATCH]
        entries = []
        for ts, _, rec, _ in chunk:
            entry = {
                "timestamp": dt.datetime.fromtimestamp(ts + shift, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "severity": LEVELS.get((rec.get("severity") or "").strip().upper(), "INFO"),
                "message": rec["message"],
            }
            if rec.get("source"):
                entry["source"] = rec["source"]
            entries.append(entry)
        answer = client.request("POST", "/api/batch-analysis/", body={"log_entries": entries})
        for entry_id, (_, _, _, anomalous) in zip(answer["log_entry_ids"], chunk):
            labels[entry_id] = anomalous
        if args.concurrent:
            tasks.append(answer["task_id"])
            continue
        if client.wait_task(answer["task_id"]) != "SUCCESS":
            failed += 1
        if args.feedback:
            operator.observe(answer["log_entry_ids"], [r[3] for r in chunk])
            operator.answer(i // BATCH + 1, chunk[-1][0] + shift)
    for task in tasks:
        if client.wait_task(task) != "SUCCESS":
            failed += 1
    seconds = time.time() - started

    verdicts, rows, cursor = {}, {}, None
    since = dt.datetime.fromtimestamp(records[0][0] + shift - 1, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    while True:
        params = {"limit": 1000, "since": since} | ({"cursor": cursor} if cursor else {})
        page = client.request("GET", "/api/logs/", query=urllib.parse.urlencode(params))
        for e in page["results"]:
            if e["id"] in labels:
                verdicts[e["id"]] = bool(e.get("is_anomaly"))
                rows[e["id"]] = e | {"label": "anomaly" if labels[e["id"]] else "normal"}
        cursor = page.get("next")
        if not cursor:
            break
    missing = [i for i in labels if i not in verdicts]
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as out:
            for i in sorted(rows):
                out.write(json.dumps(rows[i]) + "\n")
    tp = sum(1 for i, a in labels.items() if a and verdicts.get(i))
    fp = sum(1 for i, a in labels.items() if not a and verdicts.get(i))
    fn = sum(1 for i, a in labels.items() if a and not verdicts.get(i))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(
        json.dumps(
            {
                "input": os.path.basename(args.input),
                "mode": "concurrent" if args.concurrent else "in order",
                "lines": len(labels),
                "anomalies": tp + fn,
                "flagged": tp + fp,
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "f1": round(f1, 4),
                "failed_tasks": failed,
                "feedback_used": operator.used,
                "entries_not_read_back": len(missing),
                "seconds": round(seconds, 1),
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
