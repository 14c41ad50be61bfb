"""The actor runtime: contexts, hosts (in-process and remote), sinks, bias guards."""

from tickertape.actors.runtime.context import ActorContext, seeded_random
from tickertape.actors.runtime.errors import (
    ActorFailedError,
    FutureEventError,
    LookAheadError,
    PublishNotAllowedError,
    TopicTimeRegressionError,
    ZeroLatencyError,
    require_latency,
)
from tickertape.actors.runtime.inprocess import InProcessHost, StepResult
from tickertape.actors.runtime.sink import Divergence, LogSink, MemorySink, Sink, compare

__all__ = [
    "ActorContext",
    "ActorFailedError",
    "Divergence",
    "FutureEventError",
    "InProcessHost",
    "LogSink",
    "LookAheadError",
    "MemorySink",
    "PublishNotAllowedError",
    "Sink",
    "StepResult",
    "TopicTimeRegressionError",
    "ZeroLatencyError",
    "compare",
    "require_latency",
    "seeded_random",
]
