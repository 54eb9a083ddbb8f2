"""A program that fails the way real programs do, for the error-grouping tests.

usage: python3 app.py charge ORDER   dies of ValueError (message varies by order)
       python3 app.py lookup KEY     dies of KeyError
       python3 app.py otel ORDER     catches the same ValueError as `charge` and
                                     logs it through the OpenTelemetry SDK
                                     (exception.* attributes), then exits 0

The `charge` call sits at module level in both modes, so the traceback of the
uncaught error and of the logged one have the same frames: one group.
"""

import sys


def charge(order):
    raise ValueError(f"card declined for order {order}")


def lookup(key):
    return {}[key]


def otel_logger():
    import logging

    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(provider)
    log = logging.getLogger("shop")
    log.addHandler(LoggingHandler(logger_provider=provider))
    log.setLevel(logging.INFO)
    return log, provider


mode, arg = sys.argv[1], sys.argv[2]
if mode == "charge":
    charge(int(arg))
elif mode == "lookup":
    lookup(arg)
elif mode == "otel":
    log, provider = otel_logger()
    try:
        charge(int(arg))
    except ValueError:
        log.exception("payment failed")
    provider.shutdown()
    print("logged")
else:
    sys.exit(f"unknown mode {mode}")
