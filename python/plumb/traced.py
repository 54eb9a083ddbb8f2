"""``traced``: log calls, returns, exceptions and durations as logging records.

Like autologging's ``@traced``, plus what it leaves out: how long each call
took, and the exceptions (type and message) that end a call. Works on plain
functions, methods, static and class methods, generator functions, coroutine
functions, and whole classes::

    import logging, plumb

    @plumb.traced
    def load(path): ...

    @plumb.traced(level=logging.INFO, exclude=("helper",))
    class Trainer:
        def step(self, batch): ...

Each call produces two records on the logger named after the function's
module (for methods: module.ClassName), at ``level`` (DEBUG by default):

- ``CALL f(args)`` with ``plumb_event="call"``;
- ``RETURN f -> value (1.234 ms)`` with ``plumb_event="return"``, or
  ``RAISE f: ValueError: message (1.234 ms)`` with ``plumb_event="raise"``,
  ``plumb_exc_type`` and ``plumb_exc_message`` (at ``exc_level``, by default
  the same level); the exception is re-raised unchanged.

Every record carries ``plumb_function`` (qualified name), ``plumb_call_id``
(the same on the call and its end) and, on the end, ``plumb_duration_ns``;
its file and line are those of the traced function. Arguments and values are
shown with ``reprlib`` so huge objects stay short.

Tracebacks stay the user's: a traced function's wrapper is a frame of the
running program, so Python puts it into every traceback passing through it.
Each wrapper sets ``__tracebackhide__`` (which pytest and IPython honour), and
the first use of ``traced`` installs ``sys.excepthook`` and
``threading.excepthook`` hooks (calling the ones they replace) that cut the
wrappers out of an uncaught exception's traceback and of its causes';
:func:`clean_traceback` does the same for code that prints tracebacks
itself, and :class:`plumb.PlumbHandler` applies it to the stack traces it
ships.

When the logger is not enabled for ``level`` a traced call costs one level
check. ``PLUMB_TRACED_NOOP=1`` in the environment makes the decorator return
functions unchanged.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import os
import reprlib
import sys
import threading
import time
from types import TracebackType
from typing import Any, Callable, Iterable, Optional

__all__ = ["traced", "clean_traceback"]

_call_ids = itertools.count(1)
_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 10


def _emit(logger: logging.Logger, level: int, func: Callable, msg: str, args: tuple, extra: dict) -> None:
    code = getattr(func, "__code__", None)
    record = logger.makeRecord(
        logger.name,
        level,
        code.co_filename if code else "(unknown file)",
        code.co_firstlineno if code else 0,
        msg,
        args,
        None,
        func=func.__name__,
        extra=extra,
    )
    logger.handle(record)


def _describe_args(args: tuple, kwargs: dict) -> str:
    parts = [_repr.repr(a) for a in args]
    parts += [f"{k}={_repr.repr(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


class _Tracer:
    def __init__(self, func: Callable, logger: logging.Logger, level: int, exc_level: int) -> None:
        self.func = func
        self.logger = logger
        self.level = level
        self.exc_level = exc_level
        self.name = func.__qualname__

    def call(self, args: tuple, kwargs: dict) -> int:
        call_id = next(_call_ids)
        _emit(
            self.logger,
            self.level,
            self.func,
            "CALL %s(%s)",
            (self.name, _describe_args(args, kwargs)),
            {"plumb_event": "call", "plumb_function": self.name, "plumb_call_id": call_id},
        )
        return call_id

    def returned(self, call_id: int, start: int, value: Any) -> None:
        duration = time.perf_counter_ns() - start
        _emit(
            self.logger,
            self.level,
            self.func,
            "RETURN %s -> %s (%.3f ms)",
            (self.name, _repr.repr(value), duration / 1e6),
            {
                "plumb_event": "return",
                "plumb_function": self.name,
                "plumb_call_id": call_id,
                "plumb_duration_ns": duration,
            },
        )

    def raised(self, call_id: int, start: int, exc: BaseException) -> None:
        duration = time.perf_counter_ns() - start
        exc_type = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__main__"):
            exc_type = f"{module}.{exc_type}"
        _emit(
            self.logger,
            self.exc_level,
            self.func,
            "RAISE %s: %s: %s (%.3f ms)",
            (self.name, exc_type, exc, duration / 1e6),
            {
                "plumb_event": "raise",
                "plumb_function": self.name,
                "plumb_call_id": call_id,
                "plumb_duration_ns": duration,
                "plumb_exc_type": exc_type,
                "plumb_exc_message": str(exc),
            },
        )


def _wrap(func: Callable, logger: logging.Logger, level: int, exc_level: int) -> Callable:
    tracer = _Tracer(func, logger, level, exc_level)
    enabled = logger.isEnabledFor

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # noqa: F841 (read by pytest and IPython)
            if not enabled(level):
                return await func(*args, **kwargs)
            call_id = tracer.call(args, kwargs)
            start = time.perf_counter_ns()
            try:
                value = await func(*args, **kwargs)
            except BaseException as e:
                tracer.raised(call_id, start, e)
                raise
            tracer.returned(call_id, start, value)
            return value

        _WRAPPER_CODES.add(async_wrapper.__code__)
        _install_hooks()
        return async_wrapper

    if inspect.isgeneratorfunction(func):
        # The duration of a generator is its whole life, from the call to
        # its return (or exception), including the time spent suspended.
        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # noqa: F841 (read by pytest and IPython)
            if not enabled(level):
                return (yield from func(*args, **kwargs))
            call_id = tracer.call(args, kwargs)
            start = time.perf_counter_ns()
            try:
                value = yield from func(*args, **kwargs)
            except BaseException as e:
                tracer.raised(call_id, start, e)
                raise
            tracer.returned(call_id, start, value)
            return value

        _WRAPPER_CODES.add(gen_wrapper.__code__)
        _install_hooks()
        return gen_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # noqa: F841 (read by pytest and IPython)
        if not enabled(level):
            return func(*args, **kwargs)
        call_id = tracer.call(args, kwargs)
        start = time.perf_counter_ns()
        try:
            value = func(*args, **kwargs)
        except BaseException as e:
            tracer.raised(call_id, start, e)
            raise
        tracer.returned(call_id, start, value)
        return value

    _WRAPPER_CODES.add(wrapper.__code__)
    _install_hooks()
    return wrapper


# The code objects of the wrappers above: one per kind, shared by every
# wrapped function, so a traceback entry is a wrapper's when its frame runs
# one of them.
_WRAPPER_CODES: set = set()
_hooks_installed = False
_hooks_lock = threading.Lock()


def clean_traceback(exc: BaseException) -> BaseException:
    """Cuts the frames of ``traced`` wrappers out of ``exc``'s traceback and
    out of those of its causes and contexts; returns ``exc``."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = _trim(e.__traceback__)
        todo.extend([e.__cause__, e.__context__])
        todo.extend(getattr(e, "exceptions", ()) or ())
    return exc


def _trim(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    while tb is not None and tb.tb_frame.f_code in _WRAPPER_CODES:
        tb = tb.tb_next
    head = tb
    while tb is not None:
        nxt = tb.tb_next
        while nxt is not None and nxt.tb_frame.f_code in _WRAPPER_CODES:
            nxt = nxt.tb_next
        tb.tb_next = nxt
        tb = nxt
    return head


def _install_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        previous = sys.excepthook

        def excepthook(etype: Any, value: Any, tb: Any) -> None:
            if isinstance(value, BaseException):
                clean_traceback(value)
                tb = value.__traceback__
            previous(etype, value, tb)

        sys.excepthook = excepthook
        previous_thread = threading.excepthook

        def thread_excepthook(args: Any) -> None:
            if args.exc_value is not None:
                clean_traceback(args.exc_value)
                args = threading.ExceptHookArgs((args.exc_type, args.exc_value, args.exc_value.__traceback__, args.thread))
            previous_thread(args)

        threading.excepthook = thread_excepthook


def _wrap_class(cls: type, logger: Optional[logging.Logger], level: int, exc_level: int, methods: Optional[Iterable[str]], exclude: Iterable[str]) -> type:
    logger = logger or logging.getLogger(f"{cls.__module__}.{cls.__qualname__}")
    wanted = set(methods) if methods is not None else None
    excluded = set(exclude)
    for name, attr in list(vars(cls).items()):
        if name in excluded:
            continue
        if wanted is not None:
            if name not in wanted:
                continue
        elif name.startswith("__") and name not in ("__init__", "__call__"):
            continue
        if isinstance(attr, staticmethod):
            setattr(cls, name, staticmethod(_wrap(attr.__func__, logger, level, exc_level)))
        elif isinstance(attr, classmethod):
            setattr(cls, name, classmethod(_wrap(attr.__func__, logger, level, exc_level)))
        elif inspect.isfunction(attr):
            setattr(cls, name, _wrap(attr, logger, level, exc_level))
    return cls


def traced(
    obj: Any = None,
    *,
    logger: Optional[logging.Logger] = None,
    level: int = logging.DEBUG,
    exc_level: Optional[int] = None,
    methods: Optional[Iterable[str]] = None,
    exclude: Iterable[str] = (),
) -> Any:
    """Decorates a function or a class; usable bare (``@traced``) or with options.

    For a class, traces the methods named in ``methods``, or else every
    method not starting with a double underscore plus ``__init__`` and
    ``__call__``, minus those in ``exclude``.
    """
    exc = level if exc_level is None else exc_level

    def decorate(target: Any) -> Any:
        if os.environ.get("PLUMB_TRACED_NOOP", "") not in ("", "0"):
            return target
        if inspect.isclass(target):
            return _wrap_class(target, logger, level, exc, methods, exclude)
        if isinstance(target, (staticmethod, classmethod)):
            inner = target.__func__
            return type(target)(_wrap(inner, logger or logging.getLogger(inner.__module__), level, exc))
        if not callable(target):
            raise TypeError(f"traced needs a function or a class, not {type(target).__name__}")
        return _wrap(target, logger or logging.getLogger(target.__module__), level, exc)

    if obj is None:
        return decorate
    return decorate(obj)
