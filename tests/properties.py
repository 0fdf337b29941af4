"""Hypothesis settings for a property that runs each example against a test database."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings


def on_a_database(max_examples: int) -> settings:
    """`max_examples` examples, with no deadline (database work varies with the machine's load)
    and no shrinking: shrinking a sequence of database operations takes minutes, and the failing
    example is printed as it is. The function-scoped database fixture is shared by the examples,
    so each property must start every example from a state of its own."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
