"""Ship log lines to logcanary with the OpenTelemetry Python SDK (tests/tests/e2e/shippers.rs).

The lines go through the SDK as an application's would: Python `logging` -> the SDK's
LoggingHandler -> a log record processor -> an exporter to `<api>/v1/logs` with an API
token. `--encoding protobuf` uses the SDK's own OTLP/HTTP exporter (gzip on); `json`
encodes the same records with the SDK's OTLP encoder and posts the spec's JSON form
(protobuf JSON mapping, enums as numbers). Exits 1 if any export failed.

Usage: otel_send.py API TOKEN ENCODING SERVICE RUN_ID
"""

import logging
import sys

import requests
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

api, token, encoding, service, run_id = sys.argv[1:6]
endpoint = f"{api}/v1/logs"
headers = {"Authorization": f"Bearer {token}"}
results = []


class Checked(OTLPLogExporter):
    """The SDK's exporter, remembering whether each export succeeded."""

    def export(self, batch):
        result = super().export(batch)
        results.append(result)
        return result


class JsonExporter(LogRecordExporter):
    """The SDK's records in the OTLP JSON encoding."""

    def export(self, batch):
        body = json_format.MessageToJson(encode_logs(batch), use_integers_for_enums=True)
        answer = requests.post(endpoint, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=30)
        ok = answer.status_code == 200
        result = LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE
        if not ok:
            print(f"export failed: {answer.status_code} {answer.text}", file=sys.stderr)
        results.append(result)
        return result

    def force_flush(self, timeout_millis=30000):
        return True

    def shutdown(self):
        pass


if encoding == "protobuf":
    exporter = Checked(endpoint=endpoint, headers=headers, compression=Compression.Gzip, timeout=30)
else:
    exporter = JsonExporter()

provider = LoggerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "e2e"}))
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
log = logging.getLogger(f"logcanary.e2e.{encoding}")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(handler)

log.info("user %s logged in from 10.0.0.%d run %s", "alice", 7, run_id)
log.warning("disk usage at %d%% on /var run %s", 91, run_id)
log.error("payment service returned status %d run %s", 503, run_id)
log.critical("kernel panic: fatal machine check on cpu %d run %s", 3, run_id)

provider.force_flush()
provider.shutdown()
print(f"exports: {len(results)}, failed: {sum(r != LogRecordExportResult.SUCCESS for r in results)}")
sys.exit(0 if results and all(r == LogRecordExportResult.SUCCESS for r in results) else 1)
