"""An OTLP/HTTP receiver for plumb's export tests, built on the
OpenTelemetry project's own protobuf definitions (`opentelemetry-proto`).

It decodes every POST to /v1/traces, /v1/logs and /v1/metrics with the
project's generated classes and appends one JSON line per record it got
(span, log record, data point) to OUT, with the request's Authorization
header. While the file OUT.status holds a number, it answers every request
with that status instead (and records nothing), so a test can make it
refuse or fail without restarting it.

usage: python3 receiver.py PORT OUT
Prints `listening PORT` once it accepts connections.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind else None
    return out


def any_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def spans(body):
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    for rs in req.resource_spans:
        res = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "signal": "span",
                    "resource": res,
                    "scope": ss.scope.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status_code": s.status.code,
                    "status_message": s.status.message,
                    "attributes": attrs(s.attributes),
                }


def logs(body):
    req = logs_service_pb2.ExportLogsServiceRequest()
    req.ParseFromString(body)
    for rl in req.resource_logs:
        res = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                yield {
                    "signal": "log",
                    "resource": res,
                    "scope": sl.scope.name,
                    "time": r.time_unix_nano,
                    "severity_number": r.severity_number,
                    "severity_text": r.severity_text,
                    "body": any_value(r.body),
                    "trace_id": r.trace_id.hex(),
                    "span_id": r.span_id.hex(),
                    "attributes": attrs(r.attributes),
                }


def metrics(body):
    req = metrics_service_pb2.ExportMetricsServiceRequest()
    req.ParseFromString(body)
    for rm in req.resource_metrics:
        res = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                points = getattr(m, kind).data_points if kind else []
                for p in points:
                    value = None
                    if kind in ("gauge", "sum"):
                        value = getattr(p, p.WhichOneof("value"))
                    yield {
                        "signal": "metric",
                        "resource": res,
                        "name": m.name,
                        "kind": kind,
                        "unit": m.unit,
                        "time": p.time_unix_nano,
                        "value": value,
                        "attributes": attrs(p.attributes),
                    }


DECODERS = {"/v1/traces": spans, "/v1/logs": logs, "/v1/metrics": metrics}


class Handler(BaseHTTPRequestHandler):
    out = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            with open(self.out + ".status") as f:
                forced = int(f.read().strip())
        except (OSError, ValueError):
            forced = None
        if forced is not None:
            self.answer(forced, b"refused by the test receiver")
            return
        decode = DECODERS.get(self.path)
        if decode is None or self.headers.get("Content-Type") != "application/x-protobuf":
            self.answer(404, b"unknown path or content type")
            return
        try:
            records = list(decode(body))
        except Exception as e:  # a body the OpenTelemetry classes reject
            self.answer(400, str(e).encode())
            return
        auth = self.headers.get("Authorization")
        with open(self.out, "a") as f:
            for r in records:
                r["authorization"] = auth
                f.write(json.dumps(r, default=str) + "\n")
        self.answer(200, b"")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    Handler.out = out
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
