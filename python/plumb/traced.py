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
import time
from typing import Any, Callable, Iterable, Optional

__all__ = ["traced"]

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

        return async_wrapper

    if inspect.isgeneratorfunction(func):
        # The duration of a generator is its whole life, from the call to
        # its return (or exception), including the time spent suspended.
        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
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

        return gen_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
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

    return wrapper


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
