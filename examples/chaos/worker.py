#!/usr/bin/env python3
"""A worker for plumb chaos scenarios: counts steps and checkpoints its
state with plumb's checkpoint library (python/plumb/checkpoint.py), so an
eviction (SIGTERM, then a grace period) saves and exits 75, and the next
start resumes where it stopped. A checkpoint that cannot be written (the
disk is full) is logged and the work goes on.
"""

import argparse
import os
import sys
import time

try:
    from plumb.checkpoint import Checkpointer, StorageFull, CheckpointError
except ImportError:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "python"))
    from plumb.checkpoint import Checkpointer, StorageFull, CheckpointError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="data/checkpoints")
    ap.add_argument("--every", type=int, default=5)
    args = ap.parse_args()
    ck = Checkpointer(args.dir, every_steps=args.every)
    state = ck.restore({"step": 0})
    if ck.restored is not None:
        print(f"worker: resumed at step {state['step']}", flush=True)
    else:
        print("worker: starting at step 0", flush=True)
    full = False
    while True:
        state["step"] += 1
        time.sleep(0.02)
        try:
            info = ck.at_safe_point(state)
        except StorageFull as e:
            if not full:
                print(f"worker: checkpoint failed: no space left ({e})", flush=True)
            full = True
            ck.exit_if_evicted()
            continue
        except CheckpointError as e:
            print(f"worker: checkpoint failed: {e}", flush=True)
            continue
        if full and info is not None:
            print(f"worker: checkpoints written again at step {state['step']}", flush=True)
            full = False
        if info is not None and state["step"] % 50 == 0:
            print(f"worker: saved step {state['step']}", flush=True)


if __name__ == "__main__":
    main()
