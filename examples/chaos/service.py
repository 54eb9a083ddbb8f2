#!/usr/bin/env python3
"""A small HTTP service for plumb chaos scenarios (standard library only).

GET /health    200 "ok"
GET /time      this process's clock (time.time()), as text
GET /env?name=VAR
               the variable's value, or 404 when it is not set
GET /checkout  asks the upstream's /health (--upstream URL) and answers
               200, or 502 when the upstream cannot be reached. With
               --retries N it tries N more times, 100 ms apart (the robust
               version); with 0 it gives up at once (the fragile one).
GET /write     writes 8 KiB under --data DIR; 507 when the disk is full.
GET /metrics   Prometheus text: service_requests_total{path,code}.
"""

import argparse
import errno
import http.server
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    ap.add_argument("--upstream", default=None)
    ap.add_argument("--retries", type=int, default=0)
    ap.add_argument("--data", default="data")
    args = ap.parse_args()
    counts = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def answer(self, code, body):
            path = urllib.parse.urlparse(self.path).path
            if path != "/metrics":
                with lock:
                    counts[(path, code)] = counts.get((path, code), 0) + 1
            data = (body + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = urllib.parse.parse_qs(url.query)
            if url.path == "/health":
                return self.answer(200, "ok")
            if url.path == "/time":
                return self.answer(200, repr(time.time()))
            if url.path == "/env":
                name = q.get("name", [""])[0]
                if name in os.environ:
                    return self.answer(200, os.environ[name])
                return self.answer(404, f"{name} is not set")
            if url.path == "/checkout":
                return self.checkout()
            if url.path == "/bytes":
                # n bytes (at most 16 MiB): something to time a download by.
                n = min(int(q.get("n", ["0"])[0] or 0), 16 << 20)
                return self.answer(200, "x" * n)
            if url.path == "/metrics":
                with lock:
                    lines = [
                        f'service_requests_total{{path="{p}",code="{c}"}} {n}'
                        for (p, c), n in sorted(counts.items())
                    ]
                return self.answer(200, "# TYPE service_requests_total counter\n" + "\n".join(lines))
            if url.path == "/write":
                try:
                    os.makedirs(args.data, exist_ok=True)
                    with open(os.path.join(args.data, "order.bin"), "wb") as f:
                        f.write(b"x" * 8192)
                        f.flush()
                        os.fsync(f.fileno())
                    return self.answer(200, "written")
                except OSError as e:
                    code = 507 if e.errno == errno.ENOSPC else 500
                    print(f"write failed: {e}", file=sys.stderr, flush=True)
                    return self.answer(code, str(e))
            return self.answer(404, "no such page")

        def checkout(self):
            if not args.upstream:
                return self.answer(500, "no --upstream")
            last = None
            for attempt in range(args.retries + 1):
                try:
                    with urllib.request.urlopen(args.upstream + "/health", timeout=1) as r:
                        r.read()
                    return self.answer(200, f"ok after {attempt + 1} attempt(s)")
                except (urllib.error.URLError, OSError) as e:
                    last = e
                    print(f"checkout: upstream failed (attempt {attempt + 1}): {e}", file=sys.stderr, flush=True)
                    if attempt < args.retries:
                        time.sleep(0.1)
            return self.answer(502, f"upstream unreachable: {last}")

    # A listen backlog for bursts of connections (socketserver's is 5).
    http.server.ThreadingHTTPServer.request_queue_size = 128
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"service listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
