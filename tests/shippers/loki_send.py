"""Ship log lines to logcanary's Loki push endpoint with python-logging-loki
(tests/tests/e2e/shippers.rs): Python `logging` -> LokiHandler -> `<api>/loki/api/v1/push`
(JSON), basic auth with the API token as the password. Exits 1 if any push failed.

Usage: loki_send.py API TOKEN SERVICE RUN_ID
"""

import logging
import sys

import logging_loki

api, token, service, run_id = sys.argv[1:5]
failures = []


class Checked(logging_loki.LokiHandler):
    def handleError(self, record):  # noqa: N802
        failures.append(sys.exc_info()[1])
        super().handleError(record)


handler = Checked(
    url=f"{api}/loki/api/v1/push",
    tags={"service_name": service, "env": "e2e"},
    auth=("shipper", token),
    version="1",
)
log = logging.getLogger("logcanary-e2e-loki")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(handler)

log.info("cache warmed with %d keys run %s", 1200, run_id)
log.warning("slow query took %d ms run %s", 2300, run_id)
log.error("upstream connection reset by peer run %s", run_id)
log.critical("out of memory: killed process %d run %s", 4242, run_id)

print(f"failures: {len(failures)} {failures}")
sys.exit(1 if failures else 0)
