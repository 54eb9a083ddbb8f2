"""The Python Checkpointer on real files, real processes and a real full disk."""

import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import plumb
from plumb import checkpoint as ck

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def state_for(n):
    return {"counter": n, "blob": "abcdefghijklmnopqrstuvwxyz"[n % 26] * ((n * 7919) % 50_000)}


def open_quiet(d, **kw):
    return plumb.Checkpointer(d, signals=(), **kw)


def three(d):
    with open_quiet(d) as c:
        for n in (1, 2, 3):
            c.save(state_for(n))
        return c.last_saved.path


def test_save_restore_keep_and_leftover_cleanup(tmp_path):
    leftover = tmp_path / ".checkpoint-00000000000000000001.ckpt.tmp"
    leftover.write_bytes(b"half")
    with open_quiet(tmp_path, keep=2) as c:
        assert not leftover.exists()
        assert c.restore() is None and c.restore(default={"x": 1}) == {"x": 1}
        for n in range(1, 11):
            info = c.save(state_for(n))
        assert info.seq == 10 and info.time_rfc3339.endswith("Z")
    assert sorted(os.listdir(tmp_path)) == [
        ".checkpoint.lock",
        "checkpoint-00000000000000000009.ckpt",
        "checkpoint-00000000000000000010.ckpt",
    ]
    with open_quiet(tmp_path) as c:
        assert c.restore() == state_for(10)
        assert c.save({"more": True}).seq == 11


def truncate(p):
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])


def flip(p):
    data = bytearray(open(p, "rb").read())
    data[len(data) // 2] ^= 1
    open(p, "wb").write(bytes(data))


def zero(p):
    n = os.path.getsize(p)
    open(p, "wb").write(bytes(n))


def empty(p):
    open(p, "wb").close()


@pytest.mark.parametrize(
    "damage,code",
    [(truncate, "length_mismatch"), (flip, "checksum_mismatch"), (zero, "bad_magic"), (empty, "too_short")],
)
def test_damaged_newest_is_skipped_with_a_warning_naming_it(tmp_path, caplog, damage, code):
    newest = three(tmp_path)
    damage(newest)
    entries = ck.inspect(str(tmp_path))
    bad = [e for e in entries if e.path == newest][0]
    assert bad.info is None and bad.problem.code == code
    with caplog.at_level(logging.WARNING, logger="plumb.checkpoint"):
        with open_quiet(tmp_path) as c:
            assert c.restore() == state_for(2)
    assert newest in caplog.text


def test_never_restores_from_a_corrupt_file(tmp_path):
    three(tmp_path)
    for e in ck.inspect(str(tmp_path)):
        flip(e.path)
    with open_quiet(tmp_path) as c:
        assert c.restored is None and c.restore() is None
        assert c.save({"fresh": 1}).seq == 4


def test_one_writer_at_a_time(tmp_path):
    first = open_quiet(tmp_path)
    with pytest.raises(plumb.Locked, match="in use by another process"):
        open_quiet(tmp_path)
    first.close()
    open_quiet(tmp_path).close()


def test_periodic_saving_and_encodings(tmp_path):
    with open_quiet(tmp_path, every_steps=10, encoding="pickle") as c:
        saved = [n for n in range(1, 26) if c.at_safe_point({"n": n, "set": {n}})]
        assert saved == [10, 20]
    with open_quiet(tmp_path) as c:
        assert c.restored.encoding == "pickle" and c.restore() == {"n": 20, "set": {20}}
        c.save_bytes(b"\x00\x01", "cbor")
    with open_quiet(tmp_path, every_seconds=0.2) as c:
        assert c.restored_bytes() == b"\x00\x01"
        with pytest.raises(plumb.CheckpointError, match="cbor"):
            c.restore()
        assert not c.should_save()
        time.sleep(0.25)
        assert c.should_save()
        with pytest.raises(ValueError, match="encoding name"):
            c.save_bytes(b"", "has space")
    with pytest.raises(ValueError, match="keep"):
        plumb.Checkpointer(tmp_path, keep=0, signals=())


def test_disk_full_keeps_the_previous_checkpoint(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, (
        f"this test needs to mount a 64 KiB tmpfs (as root) to fill a disk for real: {r.stderr.strip()}"
    )
    try:
        d = mnt / "ckpt"
        small, big = {"blob": "a" * 20_000}, {"blob": "b" * 70_000}
        with open_quiet(d) as c:
            first = c.save(small)
            with pytest.raises(plumb.StorageFull, match="previous checkpoint is intact"):
                c.save(big)
        assert sorted(os.listdir(d)) == [".checkpoint.lock", os.path.basename(first.path)], "temporary file left"
        with open_quiet(d) as c:
            assert c.restored.seq == first.seq and c.restore() == small
            assert c.save({"small": "again"}).seq > first.seq
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


CHILD = textwrap.dedent(
    """
    import sys, time, plumb
    ckpt = plumb.Checkpointer(sys.argv[1], every_steps=10**9)
    n = ckpt.restore(default={"counter": 0})["counter"]
    print("READY", n, flush=True)
    try:
        for _ in range(20000):
            n += 1
            time.sleep(0.001)
            print("STEP", n, flush=True)
            ckpt.at_safe_point({"counter": n})
    finally:
        # Runs because the exit is a SystemExit, not os._exit.
        print("FINALLY", flush=True)
    """
)


def run_child(d, sig):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(d)], stdout=subprocess.PIPE, text=True, env=env)
    ready = p.stdout.readline()
    assert ready.startswith("READY"), ready
    time.sleep(0.05)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=30)
    steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("STEP")]
    return p.returncode, int(ready.split()[1]), steps, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1])
def test_eviction_signal_saves_then_exits_75_cleanly_and_resumes(tmp_path, sig):
    code, start, steps, out = run_child(tmp_path, sig)
    assert code == plumb.EXIT_EVICTED, out
    assert "FINALLY" in out
    assert start == 0 and steps
    with open_quiet(tmp_path) as c:
        assert c.restore() == {"counter": steps[-1]}
    code, start, steps2, _ = run_child(tmp_path, signal.SIGTERM)
    assert code == plumb.EXIT_EVICTED and start == steps[-1] and steps2[0] == steps[-1] + 1


def test_close_restores_previous_handlers(tmp_path):
    before = signal.getsignal(signal.SIGUSR1)
    c = plumb.Checkpointer(tmp_path)
    assert signal.getsignal(signal.SIGUSR1) != before
    os.kill(os.getpid(), signal.SIGUSR1)
    assert c.eviction_signal == signal.SIGUSR1 and c.should_save()
    c.close()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_sigkill_torture_small(tmp_path):
    """A smaller cousin of the Rust torture test (which runs 1,000+ kills):
    a Python writer killed at random moments never leaves a torn checkpoint."""
    import random

    child = textwrap.dedent(
        """
        import sys, plumb
        def state_for(n):  # the same as in the test module, without importing pytest
            return {"counter": n, "blob": "abcdefghijklmnopqrstuvwxyz"[n % 26] * ((n * 7919) % 50_000)}
        c = plumb.Checkpointer(sys.argv[1], signals=())
        n = c.restore(default={"counter": 0})["counter"]
        print("READY", n, flush=True)
        for _ in range(100000):
            n += 1
            c.save(state_for(n))
            print("SAVED", n, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    rng = random.Random(1234)
    for _ in range(40):
        p = subprocess.Popen(
            [sys.executable, "-c", child, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        acked = int(p.stdout.readline().split()[1])
        time.sleep(rng.uniform(0, 0.03))
        p.kill()
        out, _ = p.communicate()
        # The kill can cut the last line short ("SAVED" with no number):
        # only whole lines acknowledge a save.
        for line in out.split("\n")[:-1]:
            if line.startswith("SAVED"):
                acked = max(acked, int(line.split()[1]))
        with open_quiet(tmp_path) as c:
            state = c.restore(default={"counter": 0})
            assert state == (state_for(state["counter"]) if state["counter"] else {"counter": 0})
            assert state["counter"] in (acked, acked + 1)
