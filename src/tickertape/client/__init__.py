"""The router client library (docs/protocol.md).

- :func:`connect` / :class:`Client`: publish with a bounded outbox resent after
  reconnects, subscribe and fetch as async iterators resuming by gseq, commit staged
  batches, ask for stats.
- :mod:`tickertape.client.inspect`: what ``tape tail/stats/append --router`` use.
"""

from tickertape.client import inspect
from tickertape.client.connection import (
    DEFAULT_OUTBOX_EVENTS,
    Client,
    PublishRefusedError,
    RemoteSubscription,
    connect,
)
from tickertape.router.protocol import AckItem, StartAt

__all__ = [
    "DEFAULT_OUTBOX_EVENTS",
    "AckItem",
    "Client",
    "PublishRefusedError",
    "RemoteSubscription",
    "StartAt",
    "connect",
    "inspect",
]
