"""Entry points that sync make the cycle collector run rarely (see `tune_garbage_collection`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from klaviyo_analytics.cli.runtime import GC_THRESHOLDS, tune_garbage_collection


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_raises_the_thresholds_and_freezes_what_is_alive() -> None:
    alive = object()
    holder = [alive]  # a container: tracked by the collector until frozen
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_garbage_collection()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_threshold()[0] > 700  # CPython's default, which the sync outgrew
    assert gc.get_freeze_count() > 0
    assert all(holder is not o for o in gc.get_objects())  # frozen: out of the collector's sight


@pytest.mark.usefixtures("restored_gc")
def test_cycles_are_still_collected_after_tuning() -> None:
    tune_garbage_collection()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
