"""The stream registry is the one list of streams every part of the system reads."""

from __future__ import annotations

import pytest
from apscheduler.triggers.cron import CronTrigger

from klaviyo_analytics.api.cache import STREAM_GROUPS
from klaviyo_analytics.sync.registry import REGISTRY, STREAMS, stream
from klaviyo_analytics.sync.scheduler import DEFAULT_SCHEDULES


def test_each_stream_comes_after_the_streams_it_needs() -> None:
    seen: set[str] = set()
    for spec in REGISTRY:
        assert set(spec.after) <= seen, f"{spec.name} runs before {set(spec.after) - seen}"
        seen.add(spec.name)
    assert len(seen) == len(REGISTRY)


def test_the_cache_and_the_scheduler_know_exactly_the_registrys_streams() -> None:
    assert set(STREAM_GROUPS) == set(STREAMS)
    assert set(STREAMS) <= set(DEFAULT_SCHEDULES)
    for spec in REGISTRY:
        assert DEFAULT_SCHEDULES[spec.name] == spec.schedule
        CronTrigger.from_crontab(spec.schedule)
        assert spec.tables


def test_an_unknown_stream_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="choose one of: all, metrics, campaigns"):
        stream("nosuch")
