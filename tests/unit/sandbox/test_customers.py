"""Orders carry Shopify-shaped baskets from a stated customer model whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.customers import CATALOGUE, TRUTH
from klaviyo_analytics.sandbox.generator import EventColumns, StoreGenerator
from klaviyo_analytics.sandbox.render import Renderer

OPTIONS = StoreOptions(seed=5, profiles=4_000, days=120, campaigns=8, flows=5)


@pytest.fixture(scope="module")
def store() -> StoreGenerator:
    return StoreGenerator(OPTIONS)


@pytest.fixture(scope="module")
def events(store: StoreGenerator) -> EventColumns:
    return store.events_between(store.start_ts, store.end_ts + 1)


def test_each_order_has_one_ordered_product_per_item_and_the_items_add_up(
    store: StoreGenerator, events: EventColumns
) -> None:
    renderer = Renderer(store.catalog, store.customers.staple)
    orders = np.flatnonzero(events.metric == c.PLACED_ORDER)
    lines = events.take(events.metric == c.ORDERED_PRODUCT)
    assert orders.size > 500
    for i in orders[:300].tolist():
        props = renderer.properties(events, i, int(events.id[i]))
        items = props["Items"]
        subtotal = round(sum(item["RowTotal"] for item in items), 2)
        assert props["$value"] == round(subtotal - props["Discount Value"], 2)
        assert props["OrderId"] == props["$event_id"] == str(int(events.id[i]))
        assert props["ItemNames"] == [item["ProductName"] for item in items]
        for item in items:
            assert item["RowTotal"] == round(item["ItemPrice"] * item["Quantity"], 2)
            assert set(item) >= {"ProductID", "SKU", "ProductName", "Quantity", "ItemPrice",
                                 "RowTotal", "Categories", "Brand"}  # fmt: skip
        mine = lines.take(lines.attr == events.id[i])
        assert sorted(CATALOGUE[p].sku for p in mine.aux.tolist()) == sorted(
            item["SKU"] for item in items
        )
        assert int(mine.value.sum()) == round(subtotal * 100)
        assert np.all(mine.ts == events.ts[i]) and np.all(mine.profile == events.profile[i])
    assert any(
        renderer.properties(events, i, int(events.id[i]))["Discount Codes"] for i in orders[:300]
    )


def test_consumables_are_rebought_and_durables_are_not(events: EventColumns) -> None:
    lines = events.take(events.metric == c.ORDERED_PRODUCT)
    repeat = {True: [0, 0], False: [0, 0]}
    for product in range(len(CATALOGUE)):
        buyers = lines.profile[lines.aux == product]
        _, counts = np.unique(np.unique(np.stack([buyers, lines.attr[lines.aux == product]]),
                                        axis=1)[0], return_counts=True)  # fmt: skip
        kind = CATALOGUE[product].consumable
        repeat[kind][0] += int((counts > 1).sum())
        repeat[kind][1] += counts.size
    consumable = repeat[True][0] / repeat[True][1]
    durable = repeat[False][0] / repeat[False][1]
    assert consumable > 2 * durable


def test_order_counts_follow_the_true_purchase_rates(
    store: StoreGenerator, events: EventColumns
) -> None:
    model = store.customers
    placed = events.take((events.metric == c.PLACED_ORDER) & (events.attr < 0))
    n = OPTIONS.profiles
    orders = np.bincount(placed.profile, minlength=n)
    # Alive through the whole window: expected orders are rate * days (seasonality ~ 1).
    whole = (model.created <= store.start_ts) & (model.death_ts > store.end_ts)
    expected = model.rate[whole] * OPTIONS.days
    assert abs(orders[whole].sum() / expected.sum() - 1) < 0.15
    # Nobody orders before their creation or after their lifetime ends.
    assert np.all(placed.ts >= model.created[placed.profile])
    assert np.all(placed.ts < model.death_ts[placed.profile])
    # The drawn rates match the stated truth.
    assert abs(model.rate.mean() / (TRUTH.r / TRUTH.alpha) - 1) < 0.1
    assert abs(model.spend_rate.mean() / (TRUTH.q / TRUTH.gamma) - 1) < 0.1


def test_the_same_seed_gives_the_same_baskets() -> None:
    a, b = StoreGenerator(OPTIONS), StoreGenerator(OPTIONS)
    day = a.start_ts // 86_400 + 30
    for name in ("ts", "id", "metric", "profile", "value", "attr", "aux"):
        assert np.array_equal(getattr(a.day(day), name), getattr(b.day(day), name))
