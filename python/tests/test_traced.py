"""plumb.traced: calls, returns, exceptions and durations as logging records."""

import asyncio
import logging

import pytest

import plumb


class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def keep():
    handler = Keep()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(old)


@plumb.traced
def add(a, b=0):
    return a + b


@plumb.traced(level=logging.INFO)
def fail(msg):
    raise ValueError(msg)


def test_call_and_return_with_duration(keep):
    assert add(2, b=3) == 5
    call, ret = [r for r in keep if getattr(r, "plumb_function", "") == "add"]
    assert call.plumb_event == "call" and call.getMessage() == "CALL add(2, b=3)"
    assert ret.plumb_event == "return" and ret.getMessage().startswith("RETURN add -> 5 (")
    assert ret.plumb_call_id == call.plumb_call_id
    assert ret.plumb_duration_ns >= 0
    assert call.name == __name__ and call.levelno == logging.DEBUG
    # The record points at the traced function, not at the wrapper.
    assert call.pathname == __file__ and call.funcName == "add"
    assert call.lineno == add.__wrapped__.__code__.co_firstlineno


def test_exception_type_message_and_duration_then_reraised(keep):
    with pytest.raises(ValueError, match="bad input 7"):
        fail("bad input 7")
    raise_rec = [r for r in keep if getattr(r, "plumb_event", "") == "raise"][0]
    assert raise_rec.plumb_exc_type == "ValueError"
    assert raise_rec.plumb_exc_message == "bad input 7"
    assert raise_rec.levelno == logging.INFO
    assert "RAISE fail: ValueError: bad input 7 (" in raise_rec.getMessage()
    assert raise_rec.plumb_duration_ns >= 0


def test_duration_measures_the_call(keep):
    import time

    @plumb.traced
    def slow():
        time.sleep(0.05)

    slow()
    ret = [r for r in keep if getattr(r, "plumb_event", "") == "return"][0]
    assert ret.plumb_duration_ns >= 50_000_000


@plumb.traced(exclude=("hidden",))
class Model:
    def __init__(self, w):
        self.w = w

    def predict(self, x):
        return self.w * x

    def hidden(self):
        return 1

    @staticmethod
    def unit():
        return "u"

    @classmethod
    def make(cls):
        return cls(2)

    def __repr__(self):
        return "Model()"


def test_class_methods_static_and_class_methods(keep):
    m = Model.make()
    assert m.predict(4) == 8 and m.hidden() == 1 and Model.unit() == "u"
    names = [r.plumb_function for r in keep if getattr(r, "plumb_event", "") == "call"]
    assert names == ["Model.make", "Model.__init__", "Model.predict", "Model.unit"]
    assert {r.name for r in keep if hasattr(r, "plumb_event")} == {f"{__name__}.Model"}


def test_generators_and_coroutines(keep):
    @plumb.traced
    def gen(n):
        for i in range(n):
            yield i
        return "done"

    @plumb.traced
    async def co(x):
        await asyncio.sleep(0)
        if x < 0:
            raise KeyError("negative")
        return x * 2

    assert list(gen(3)) == [0, 1, 2]
    assert asyncio.run(co(21)) == 42
    with pytest.raises(KeyError):
        asyncio.run(co(-1))
    ends = [(r.plumb_function.split(".")[-1], r.plumb_event) for r in keep if getattr(r, "plumb_event", "call") != "call"]
    assert ends == [("gen", "return"), ("co", "return"), ("co", "raise")]
    assert "RETURN" in [r for r in keep if getattr(r, "plumb_event", "") == "return"][0].getMessage()


def test_nothing_is_logged_when_the_level_is_off(keep):
    logging.getLogger().setLevel(logging.WARNING)
    assert add(1) == 1
    assert not [r for r in keep if hasattr(r, "plumb_event")]


def test_huge_arguments_are_shortened(keep):
    add("x" * 10_000, "y")
    call = [r for r in keep if getattr(r, "plumb_event", "") == "call"][0]
    assert len(call.getMessage()) < 200


def test_noop_switch(monkeypatch):
    monkeypatch.setenv("PLUMB_TRACED_NOOP", "1")

    def f():
        return 1

    assert plumb.traced(f) is f


def test_tracebacks_do_not_show_the_wrapper(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(
        "import logging, threading, plumb\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "@plumb.traced\n"
        "def parse(x):\n"
        "    return int(x)\n"
        "@plumb.traced\n"
        "def load(x):\n"
        "    try:\n"
        "        return parse(x)\n"
        "    except ValueError as e:\n"
        "        raise RuntimeError('cannot load') from e\n"
        "t = threading.Thread(target=load, args=('thread',))\n"
        "t.start(); t.join()\n"
        "load('main')\n"
    )
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(plumb.__file__)))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=pkg),
    )
    assert out.returncode == 1
    err = out.stderr
    # Both tracebacks (the thread's and the main one), each with its cause.
    lines = err.splitlines()
    assert sum(line.startswith("ValueError: invalid literal") for line in lines) == 2, err
    assert sum(line.startswith("RuntimeError: cannot load") for line in lines) == 2, err
    assert 'line 14, in <module>' in err and 'in load' in err and 'in parse' in err, err
    assert "traced.py" not in err and "in wrapper" not in err, err
