"""plumb.PlumbHandler against a real HTTP server on 127.0.0.1."""

import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import plumb
from plumb.log import otlp_severity


class Collector:
    """A real HTTP server that records every POSTed body and answers
    ``status`` (200 by default), optionally slowly."""

    def __init__(self, port=0):
        self.bodies = []
        self.headers = []
        self.status = 200
        self.delay = 0.0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.status == 200:
                    outer.bodies.append(json.loads(body))
                    outer.headers.append((self.path, dict(self.headers)))
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def records(self):
        out = []
        for body in self.bodies:
            for rl in body["resourceLogs"]:
                for sl in rl["scopeLogs"]:
                    for r in sl["logRecords"]:
                        out.append((rl["resource"], sl["scope"], r))
        return out


def attrs(kvs):
    out = {}
    for kv in kvs:
        (kind, value), = kv["value"].items()
        out[kv["key"]] = value
    return out


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


@pytest.fixture
def logger():
    log = logging.getLogger("plumb.tests.app")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_records_go_out_as_otlp_json_with_resource_exception_and_extras(collector, logger, tmp_path, monkeypatch):
    monkeypatch.setenv("PLUMB_RUN_ID", "0192f0c4-1111-7000-8000-000000000001")
    monkeypatch.setenv("PLUMB_TOKEN", "s3cret")
    h = plumb.PlumbHandler(collector.url, service_name="trainer", spool_dir=str(tmp_path), flush_interval=0.05)
    logger.addHandler(h)
    logger.warning("disk %s is %d%% full", "/data", 93, extra={"disk": "/data", "pct": 93, "ok": False})
    try:
        raise ValueError("bad shard 7")
    except ValueError:
        logger.exception("shard failed")
    logging.getLogger("plumb.tests.other").addHandler(h)
    logging.getLogger("plumb.tests.other").error("elsewhere")
    assert h.flush(10)
    logging.getLogger("plumb.tests.other").removeHandler(h)

    path, headers = collector.headers[0]
    assert path == "/v1/logs"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer s3cret"
    recs = collector.records()
    assert len(recs) == 3
    resource, scope, warn = recs[0]
    res = attrs(resource["attributes"])
    assert res["service.name"] == "trainer"
    assert res["plumb.run.id"] == "0192f0c4-1111-7000-8000-000000000001"
    assert res["process.pid"] == str(os.getpid())
    assert scope["name"] == "plumb.tests.app"
    assert isinstance(warn["timeUnixNano"], str) and int(warn["timeUnixNano"]) > 1_600_000_000 * 10**9
    assert warn["severityNumber"] == 13 and warn["severityText"] == "WARNING"
    assert warn["body"] == {"stringValue": "disk /data is 93% full"}
    a = attrs(warn["attributes"])
    assert a["disk"] == "/data" and a["pct"] == "93" and a["ok"] is False
    assert a["code.function"] == "test_records_go_out_as_otlp_json_with_resource_exception_and_extras"
    assert int(a["code.lineno"]) > 0

    _, _, exc = recs[1]
    assert exc["severityNumber"] == 17
    e = attrs(exc["attributes"])
    assert e["exception.type"] == "ValueError"
    assert e["exception.message"] == "bad shard 7"
    assert "Traceback" in e["exception.stacktrace"] and "bad shard 7" in e["exception.stacktrace"]
    assert recs[2][1]["name"] == "plumb.tests.other"
    assert h.sent == 3 and h.dropped == 0 and h.spooled == 0


def test_unreachable_collector_spools_then_delivers_in_order(logger, tmp_path):
    # A port with nobody behind it, then a collector started on it.
    probe = Collector()
    port = probe.port
    probe.stop()
    h = plumb.PlumbHandler(
        f"http://127.0.0.1:{port}", spool_dir=str(tmp_path), flush_interval=0.05, retry_interval=0.1, timeout=1
    )
    logger.addHandler(h)
    for i in range(5):
        logger.info("early %d", i)
    assert h.flush(10)
    spool = tmp_path / f"logs-{os.getpid()}.jsonl"
    lines = spool.read_text().splitlines()
    assert lines, "nothing spooled"
    spooled = [r["body"]["stringValue"] for line in lines for r in json.loads(line)["resourceLogs"][0]["scopeLogs"][0]["logRecords"]]
    assert spooled == [f"early {i}" for i in range(5)]
    assert h.spooled == 5 and h.sent == 0

    c = Collector(port)
    try:
        logger.info("late")
        assert h.flush(10)
        deadline = time.monotonic() + 10
        while spool.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not spool.exists()
        got = [r["body"]["stringValue"] for _, _, r in c.records()]
        assert got == [f"early {i}" for i in range(5)] + ["late"]
        assert h.sent == 6
    finally:
        c.stop()


def test_without_a_collector_everything_goes_to_the_spool(logger, tmp_path, monkeypatch):
    monkeypatch.delenv("PLUMB_COLLECTOR", raising=False)
    monkeypatch.setenv("PLUMB_SPOOL", str(tmp_path))
    h = plumb.PlumbHandler(flush_interval=0.05)
    logger.addHandler(h)
    logger.error("kept locally")
    assert h.flush(10)
    doc = json.loads((tmp_path / f"logs-{os.getpid()}.jsonl").read_text().splitlines()[0])
    assert doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"] == "kept locally"


def test_spool_files_are_private_whatever_the_umask(logger, tmp_path, monkeypatch):
    monkeypatch.delenv("PLUMB_COLLECTOR", raising=False)
    spool = tmp_path / "spool"
    monkeypatch.setenv("PLUMB_SPOOL", str(spool))
    old = os.umask(0o022)
    try:
        h = plumb.PlumbHandler(flush_interval=0.05)
        logger.addHandler(h)
        logger.error("MYSQL_PWD is not for other users")
        assert h.flush(10)
    finally:
        os.umask(old)
    assert (spool.stat().st_mode & 0o777) == 0o700
    files = list(spool.glob("logs-*.jsonl"))
    assert files and all((f.stat().st_mode & 0o777) == 0o600 for f in files), [oct(f.stat().st_mode) for f in files]


def test_a_full_queue_drops_and_counts_never_blocks(collector, logger, tmp_path):
    collector.delay = 0.3
    h = plumb.PlumbHandler(collector.url, spool_dir=str(tmp_path), queue_size=5, batch_size=2, flush_interval=0.01)
    logger.addHandler(h)
    for i in range(200):
        logger.info("r%d", i)
    assert h.dropped > 0
    collector.delay = 0
    assert h.flush(30)
    logger.info("after")
    assert h.flush(10)
    bodies = [r["body"]["stringValue"] for _, _, r in collector.records()]
    real = [b for b in bodies if b.startswith("r")]
    assert len(real) + h.dropped == 200
    notices = [b for b in bodies if "records dropped" in b]
    assert notices and sum(int(n.split(": ")[1].split()[0]) for n in notices) == h.dropped


def test_a_malformed_batch_is_rejected_not_spooled(collector, logger, tmp_path):
    collector.status = 400
    h = plumb.PlumbHandler(collector.url, spool_dir=str(tmp_path), flush_interval=0.05)
    logger.addHandler(h)
    logger.info("x")
    assert h.flush(10)
    assert h.rejected == 1 and h.spooled == 0
    assert not (tmp_path / f"logs-{os.getpid()}.jsonl").exists()


def test_server_errors_are_spooled_for_later(collector, logger, tmp_path):
    collector.status = 503
    h = plumb.PlumbHandler(collector.url, spool_dir=str(tmp_path), flush_interval=0.05, retry_interval=0.05)
    logger.addHandler(h)
    logger.info("wait for me")
    assert h.flush(10)
    assert h.spooled == 1
    collector.status = 200
    deadline = time.monotonic() + 10
    while not collector.records() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["body"]["stringValue"] for _, _, r in collector.records()] == ["wait for me"]


def test_severity_numbers_follow_opentelemetry():
    assert otlp_severity(logging.DEBUG) == 5
    assert otlp_severity(logging.INFO) == 9
    assert otlp_severity(logging.WARNING) == 13
    assert otlp_severity(logging.ERROR) == 17
    assert otlp_severity(logging.CRITICAL) == 21
    assert otlp_severity(25) == 11
    assert otlp_severity(1) == 1


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="collector 'ftp://x'"):
        plumb.PlumbHandler("ftp://x")
    with pytest.raises(ValueError, match="batch_size"):
        plumb.PlumbHandler("http://127.0.0.1:1", batch_size=0)


# -- spool files of dead processes -------------------------------------------

PKG = os.path.dirname(os.path.dirname(os.path.abspath(plumb.__file__)))

SPOOLER = """
import logging, sys, plumb
h = plumb.PlumbHandler(sys.argv[1], spool_dir=sys.argv[2], flush_interval=0.05, timeout=1)
log = logging.getLogger("stage")
log.propagate = False
log.addHandler(h)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[4])):
    log.info("%s %d", sys.argv[3], i)
h.flush()
if len(sys.argv) > 5:
    sys.stdout.write("spooled\\n"); sys.stdout.flush()
    sys.stdin.read()  # stays alive until the test closes stdin
"""

DRAINER = """
import sys, plumb
h = plumb.PlumbHandler(sys.argv[1], spool_dir=sys.argv[2], flush_interval=0.05, timeout=5)
h.close()
print(h.sent)
"""


def _python(code, *args, **kw):
    env = dict(os.environ, PYTHONPATH=PKG)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True, timeout=60, **kw)


def _down_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def _bodies(c):
    return [r["body"]["stringValue"] for _, _, r in c.records()]


def test_default_spool_dir_follows_plumb_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PLUMB_SPOOL", raising=False)
    monkeypatch.delenv("PLUMB_OUTBOX", raising=False)
    monkeypatch.setenv("PLUMB_HOME", str(tmp_path / "home"))
    h = plumb.PlumbHandler(None)
    try:
        assert h.spool_path == str(tmp_path / "home" / "outbox" / "logs" / f"logs-{os.getpid()}.jsonl")
    finally:
        h.close()
    monkeypatch.setenv("PLUMB_OUTBOX", str(tmp_path / "box"))
    h = plumb.PlumbHandler(None)
    try:
        assert os.path.dirname(h.spool_path) == str(tmp_path / "box" / "logs")
    finally:
        h.close()


def test_records_a_dead_process_spooled_are_sent_by_a_later_handler(collector, tmp_path):
    spool = tmp_path / "spool"
    stage = _python(SPOOLER, _down_url(), spool, "stage", 3)
    assert stage.returncode == 0, stage.stderr
    left = [p.name for p in spool.glob("logs-*.jsonl")]
    assert len(left) == 1, left
    assert collector.records() == []

    later = _python(DRAINER, collector.url, spool)
    assert later.returncode == 0, later.stderr
    assert sorted(_bodies(collector)) == ["stage 0", "stage 1", "stage 2"]
    assert later.stdout.strip() == "3"
    assert list(spool.glob("logs-*.jsonl")) == []


def test_two_handlers_draining_at_once_send_each_record_once(collector, tmp_path):
    spool = tmp_path / "spool"
    down = _down_url()
    env = dict(os.environ, PYTHONPATH=PKG)
    stages = [
        subprocess.Popen([sys.executable, "-c", SPOOLER, down, str(spool), f"s{n}", "20"], env=env, stderr=subprocess.PIPE)
        for n in range(6)
    ]
    for p in stages:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    assert len(list(spool.glob("logs-*.jsonl"))) == 6
    drainers = [
        subprocess.Popen([sys.executable, "-c", DRAINER, collector.url, str(spool)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    sent = []
    for p in drainers:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        sent.append(int(out))
    bodies = _bodies(collector)
    expected = sorted(f"s{n} {i}" for n in range(6) for i in range(20))
    assert sorted(bodies) == expected, "every record exactly once"
    assert sum(sent) == 120
    assert list(spool.glob("logs-*.jsonl")) == []


def test_a_live_process_spool_is_never_taken(collector, tmp_path):
    spool = tmp_path / "spool"
    env = dict(os.environ, PYTHONPATH=PKG)
    live = subprocess.Popen(
        [sys.executable, "-c", SPOOLER, _down_url(), str(spool), "live", "2", "wait"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert live.stdout.readline().strip() == "spooled"
        own = spool / f"logs-{live.pid}.jsonl"
        assert own.exists()
        first = _python(DRAINER, collector.url, spool)
        assert first.returncode == 0, first.stderr
        assert collector.records() == [] and own.exists(), "a live process keeps its spool"
    finally:
        live.stdin.close()
        live.wait(timeout=30)
    # Its handler could not reach the collector when it exited, so the file
    # is still there; now that the process is gone it is taken over.
    second = _python(DRAINER, collector.url, spool)
    assert second.returncode == 0, second.stderr
    assert sorted(_bodies(collector)) == ["live 0", "live 1"]
