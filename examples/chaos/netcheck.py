#!/usr/bin/env python3
"""A probe for plumb chaos's network faults, run from inside a network
namespace: `connects URL N` opens N connections (100 ms each at most: a
dropped SYN is not sent again that soon) and passes when all of them
connect; `download URL SECONDS` fetches URL (3 s at most) and passes when
it takes less than SECONDS. Each prints what it saw."""

import socket
import sys
import time
import urllib.parse
import urllib.request


def connects(url, n):
    u = urllib.parse.urlparse(url)
    ok = 0
    for _ in range(n):
        try:
            with socket.create_connection((u.hostname, u.port), timeout=0.1):
                ok += 1
        except OSError:
            pass
    print(f"{ok}/{n} connections made")
    return ok == n


def download(url, limit):
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=3) as r:
        body = r.read()
    took = time.monotonic() - t0
    print(f"{len(body)} bytes in {took:.2f} s")
    return took < limit


if __name__ == "__main__":
    what, url, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    ok = connects(url, int(arg)) if what == "connects" else download(url, float(arg))
    sys.exit(0 if ok else 1)
