"""The retry policy value object."""

from __future__ import annotations

import random

import pytest

from klaviyo_analytics.retry import RetryPolicy


def test_delays_grow_exponentially_and_are_capped() -> None:
    policy = RetryPolicy(attempts=10, base_s=0.1, cap_s=1.0, factor=2, jitter=False)
    assert [policy.delay_s(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_jitter_stays_between_half_and_the_full_delay() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=8.0, rng=random.Random(7))
    delays = [policy.delay_s(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 100


def test_retry_after_wins_over_the_computed_delay() -> None:
    assert RetryPolicy(jitter=False).delay_s(1, retry_after_s=7.0) == 7.0


def test_attempts_and_deadline_bound_the_retries() -> None:
    now = [100.0]
    policy = RetryPolicy(attempts=5, deadline_s=10.0, clock=lambda: now[0])
    assert policy.allows(1, started_at=100.0, next_delay_s=1.0)
    assert not policy.allows(5, started_at=100.0, next_delay_s=1.0)
    now[0] = 109.5
    assert not policy.allows(2, started_at=100.0, next_delay_s=1.0)


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
