"""Ship documents to logcanary's Elasticsearch bulk endpoint with the official client's
helpers.bulk (tests/tests/e2e/shippers.rs), authenticated with the API token as an API key.
Prints the helper's (success, errors) and exits 1 unless every document was indexed.

Usage: es_send.py API TOKEN SERVICE RUN_ID
"""

import datetime
import json
import sys

from elasticsearch import Elasticsearch, helpers

api, token, service, run_id = sys.argv[1:5]
es = Elasticsearch(api, api_key=token, request_timeout=30)

now = datetime.datetime.now(datetime.timezone.utc)
lines = [
    ("info", "order 1234 shipped to warehouse run"),
    ("warning", "retrying delivery of order 1234 run"),
    ("error", "failed to charge card for order 1234 run"),
    ("critical", "database primary unreachable, failing over run"),
]
actions = [
    {
        "_index": "app-logs",
        "_source": {
            "@timestamp": (now - datetime.timedelta(seconds=len(lines) - i)).isoformat(),
            "message": f"{text} {run_id}",
            "log": {"level": level},
            "service": {"name": service},
            "labels": {"run": run_id},
        },
    }
    for i, (level, text) in enumerate(lines)
]
success, errors = helpers.bulk(es, actions, raise_on_error=False)
print(json.dumps({"success": success, "errors": errors}))
sys.exit(0 if success == len(actions) and not errors else 1)
