"""Test-wide settings.

Hypothesis: the suite runs on small shared machines (2 cores, other processes busy),
where how fast examples are generated, and how long one takes, says nothing about the
code under test: the ``too_slow`` health check and the per-example deadline are off.
Every property is still checked on the same number of examples.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")
