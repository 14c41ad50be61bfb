"""Control messages between the replay time authority and remote actors.

All travel as *ephemeral* envelopes (never logged) on the run's source namespace
(so that the run's output subscribers never receive them), topics
``system.replay.<kind>``, through the router (docs/protocol.md §8):

- ``system.replay.hello`` (actor → TA): the actor is ready, with the epoch of the
  snapshot it restored (0 for none); repeated until welcomed.
- ``system.replay.welcome`` (TA → actor): the run's settings and the announcements
  the actor must replay to catch up after its snapshot.
- ``system.replay.step`` (TA → actors): one wave to run (:class:`StepAnnounce`); a
  wave for a few actors goes to each on ``system.replay.step.<actor>`` instead
  (:func:`step_topic`), when the actor said it reads it (``Hello.direct``).
- ``system.replay.done`` (actor → TA): the actor ran a wave and staged its outputs.

The payload Structs live in :mod:`tickertape.schemas.replay` (registered with every
other payload schema) and are re-exported here.
"""

from __future__ import annotations

from tickertape.schemas.replay import (
    REPLAY_PROTOCOL,
    BatchStep,
    Done,
    Hello,
    Phase,
    StepAnnounce,
    StepOutputs,
    Welcome,
    batch_stage,
)

HELLO_TOPIC = "system.replay.hello"
WELCOME_TOPIC = "system.replay.welcome"
STEP_TOPIC = "system.replay.step"
DONE_TOPIC = "system.replay.done"
CONTROL_PATTERN = "system.replay.>"


def step_topic(actor: str) -> str:
    """The topic of the waves addressed to ``actor`` alone: ``system.replay.step.<actor>``."""
    return f"{STEP_TOPIC}.{actor}"


__all__ = [
    "CONTROL_PATTERN",
    "DONE_TOPIC",
    "HELLO_TOPIC",
    "REPLAY_PROTOCOL",
    "STEP_TOPIC",
    "WELCOME_TOPIC",
    "BatchStep",
    "Done",
    "Hello",
    "Phase",
    "StepAnnounce",
    "StepOutputs",
    "Welcome",
    "batch_stage",
    "step_topic",
]
