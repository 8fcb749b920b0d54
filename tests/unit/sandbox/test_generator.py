"""The generated store is deterministic, realistic and cheap to produce."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.catalog import DAY
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.generator import (
    KIND_CAMPAIGN,
    KIND_FLOW,
    EventColumns,
    StoreGenerator,
    seasonality,
)

OPTIONS = StoreOptions(seed=11, profiles=3_000, days=56, campaigns=10, flows=5)


@pytest.fixture(scope="module")
def store() -> StoreGenerator:
    return StoreGenerator(OPTIONS)


@pytest.fixture(scope="module")
def events(store: StoreGenerator) -> EventColumns:
    return store.events_between(store.start_ts, store.end_ts + 1)


def test_same_options_give_identical_events() -> None:
    a, b = StoreGenerator(OPTIONS), StoreGenerator(OPTIONS)
    day = a.start_ts // DAY + 20
    for name in ("ts", "id", "metric", "profile", "value", "attr"):
        assert np.array_equal(getattr(a.day(day), name), getattr(b.day(day), name))


def test_different_seeds_give_different_events() -> None:
    a = StoreGenerator(OPTIONS)
    b = StoreGenerator(StoreOptions(seed=12, profiles=3_000, days=56, campaigns=10, flows=5))
    day = a.start_ts // DAY + 20
    assert not np.array_equal(a.day(day).ts, b.day(day).ts)


def test_day_is_independent_of_generation_order() -> None:
    forward, backward = StoreGenerator(OPTIONS), StoreGenerator(OPTIONS)
    days = range(forward.start_ts // DAY, forward.start_ts // DAY + 8)
    first = [forward.day(d).id for d in days]
    last = [backward.day(d).id for d in reversed(days)][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(first, last, strict=True))


def test_events_are_sorted_by_datetime_then_id_with_unique_ids(events: EventColumns) -> None:
    order = np.lexsort((events.id, events.ts))
    assert np.array_equal(order, np.arange(len(events)))
    assert np.unique(events.id).size == len(events)


def test_many_events_share_a_second(events: EventColumns) -> None:
    _, counts = np.unique(events.ts, return_counts=True)
    assert (counts > 1).sum() > 100
    assert counts.max() >= 50  # campaign sends go out in bursts


def test_campaign_open_and_click_rates_are_realistic(
    store: StoreGenerator, events: EventColumns
) -> None:
    for campaign in store.catalog.campaigns:
        if campaign.channel != "email":
            continue
        mine = (events.kind == KIND_CAMPAIGN) & (events.source == campaign.index)
        received = int((mine & (events.metric == c.RECEIVED_EMAIL)).sum())
        openers = np.unique(events.profile[mine & (events.metric == c.OPENED_EMAIL)]).size
        clickers = np.unique(events.profile[mine & (events.metric == c.CLICKED_EMAIL)]).size
        assert received > 100
        assert 0.20 <= openers / received <= 0.45, campaign.name
        # Within four standard deviations of the campaign's own click rate.
        expected = campaign.click_rate * received
        assert abs(clickers - expected) <= 4 * np.sqrt(expected) + 1, campaign.name
        assert 0.005 <= clickers / received <= 0.06, campaign.name


def test_some_events_have_no_profile(events: EventColumns) -> None:
    assert (events.profile < 0).sum() > 0
    assert (events.profile >= 0).sum() > (events.profile < 0).sum()


def test_orders_are_attributed_to_campaigns_and_flows_or_not_at_all(events: EventColumns) -> None:
    orders = events.take(events.metric == c.PLACED_ORDER)
    attributed = orders.attr >= 0
    assert attributed.any() and (~attributed).any()
    assert set(orders.kind[attributed].tolist()) == {KIND_CAMPAIGN, KIND_FLOW}
    touched = np.isin(orders.attr[attributed], events.id)
    assert touched.mean() > 0.95  # the touch sits in the history (a few precede its start)


def test_order_values_are_positive_cents_with_a_long_tail(events: EventColumns) -> None:
    values = events.value[events.metric == c.PLACED_ORDER]
    assert values.min() >= 500
    assert np.percentile(values, 99) > 3 * np.median(values)
    refunds = events.take(events.metric == c.REFUNDED_ORDER)
    assert len(refunds) > 0 and refunds.value.min() > 0


def test_weekends_differ_from_weekdays(store: StoreGenerator) -> None:
    weekday, weekend = [], []
    for day in range(store.start_ts // DAY + 1, store.end_ts // DAY):
        ev = store.day(day)
        views = int((ev.metric == c.VIEWED_PRODUCT).sum())
        (weekend if datetime.fromtimestamp(day * DAY, UTC).weekday() >= 5 else weekday).append(
            views
        )
    assert np.mean(weekend) < 0.85 * np.mean(weekday)


def test_black_friday_and_december_are_peaks() -> None:
    black_friday = (datetime(2025, 11, 28, tzinfo=UTC).timestamp()) // DAY
    ordinary_friday = (datetime(2025, 10, 17, tzinfo=UTC).timestamp()) // DAY
    assert seasonality(int(black_friday)) >= 2.5 * seasonality(int(ordinary_friday))
    assert seasonality(int(datetime(2025, 12, 10, tzinfo=UTC).timestamp() // DAY)) > 1.2


def test_signup_forms_produce_views_and_submissions(events: EventColumns) -> None:
    views = int((events.metric == c.VIEWED_FORM).sum())
    submits = int((events.metric == c.SUBMITTED_FORM).sum())
    assert views > submits > 0


def test_count_events_matches_the_events(store: StoreGenerator, events: EventColumns) -> None:
    assert store.count_events() == len(events)
    placed = store.catalog.metrics[c.PLACED_ORDER]
    assert store.count_events(metric_id=placed.id) == int((events.metric == c.PLACED_ORDER).sum())
    since, until = store.start_ts + 5 * DAY + 3_600, store.start_ts + 9 * DAY + 7
    inside = (events.ts >= since) & (events.ts < until)
    assert store.count_events(since, until) == int(inside.sum())
    profile = int(events.profile[events.profile >= 0][0])
    pid = store.catalog.profile_id(profile)
    assert store.count_events(profile_id=pid) == int((events.profile == profile).sum())


def test_a_month_of_a_mid_sized_store_has_over_100k_events_generated_day_by_day() -> None:
    # How fast this runs is measured by bench/bench_sandbox.py, not asserted here.
    store = StoreGenerator(StoreOptions(seed=3, profiles=20_000, days=30, campaigns=8))
    days = range(store.start_ts // DAY, store.end_ts // DAY + 1)
    total = sum(len(store.day(d)) for d in days)
    assert total > 100_000
