"""tickertape: a durable, append-only event log with replayable actors, for trading."""

__version__ = "0.1.0"
