"""An ordinary OpenTelemetry-instrumented program, used as a real OTLP client.

It is configured only the standard way: OTEL_EXPORTER_OTLP_ENDPOINT says
where to export, OTEL_RESOURCE_ATTRIBUTES (which `plumb run` extends with
plumb.run.id) and OTEL_SERVICE_NAME describe it. It logs through Python's
logging module and traces two spans, one of which records an exception,
then flushes and exits.

usage: python3 otel_app.py MARKER
"""

import logging
import os
import sys

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main() -> int:
    marker = sys.argv[1] if len(sys.argv) > 1 else "marker"

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)

    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(logger_provider)
    logging.basicConfig(level=logging.INFO)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))

    log = logging.getLogger("shop")
    tracer = trace.get_tracer("shop")
    with tracer.start_as_current_span("checkout") as checkout:
        checkout.set_attribute("order.id", 42)
        log.info("checkout started for order %d", 42)
        with tracer.start_as_current_span("charge") as span:
            try:
                raise ValueError("card declined")
            except ValueError as e:
                span.record_exception(e)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(e)))
                log.warning("payment declined for order %d %s", 42, marker)
    for i in range(20):
        log.info("line %d of the batch", i)

    # Flush before exiting, as any well-behaved exporter user does.
    tracer_provider.shutdown()
    logger_provider.shutdown()
    print(f"sent telemetry with {marker}")
    if os.environ.get("PLUMB_RUN_ID"):
        print(f"plumb run id {os.environ['PLUMB_RUN_ID']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
