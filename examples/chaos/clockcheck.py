#!/usr/bin/env python3
"""Exits 1 when the service's clock (GET URL/time) is more than a minute
off this machine's, printing by how much."""

import sys
import time
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    theirs = float(r.read().decode())
skew = theirs - time.time()
print(f"service clock is ahead by {round(skew)} s")
sys.exit(1 if abs(skew) > 60 else 0)
