"""plumb for Python programs.

- :class:`Checkpointer`: atomic, checksummed checkpoints in the file format of
  the Rust crate ``plumb-checkpoint``; saves on eviction signals and exits
  with :data:`EXIT_EVICTED` (75).
- :func:`traced`: logs calls, returns, exceptions and durations through the
  standard :mod:`logging` module.
- :class:`PlumbHandler`: a :class:`logging.Handler` that ships records to a
  plumb collector as OTLP/HTTP JSON, spooling them locally while it is away.

Standard library only.
"""

from .checkpoint import (
    DEFAULT_SIGNALS,
    EXIT_EVICTED,
    CheckpointError,
    CheckpointInfo,
    Checkpointer,
    Corrupt,
    Locked,
    StorageFull,
)
from .log import PlumbHandler
from .traced import traced

__version__ = "0.1.0"

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "CheckpointInfo",
    "Corrupt",
    "Locked",
    "StorageFull",
    "EXIT_EVICTED",
    "DEFAULT_SIGNALS",
    "traced",
    "PlumbHandler",
]
