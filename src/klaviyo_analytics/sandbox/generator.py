"""Generate a believable store's events, one day at a time, deterministically.

Events are never all held in memory. Each *origin day* has its own random stream (seeded from
`(seed, day)`) and produces everything that starts that day: campaign sends, flow triggers,
shopping sessions, signups. Consequences (opens, clicks, orders, refunds) may land up to
`SPILL_DAYS` later, so the events of day `d` are the union of origin days `d - SPILL_DAYS .. d`,
cut to `d`, sorted by (datetime, id). Ids are `(origin_day << 26) | sequence` printed as 12 hex
digits, so they are unique, stable and sort like their numbers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.catalog import DAY, Catalog
from klaviyo_analytics.sandbox.columns import (
    _COLUMNS,
    _EMPTY,
    KIND_CAMPAIGN,
    KIND_FLOW,
    EventColumns,
    _Builder,
)
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.customers import Customers, basket

__all__ = [
    "KIND_CAMPAIGN",
    "KIND_FLOW",
    "SPILL_DAYS",
    "EventColumns",
    "StoreGenerator",
    "seasonality",
]

logger = logging.getLogger(__name__)

SPILL_DAYS = 4
# The purchase model's probabilities, shared with the profiles' predictive analytics.
ANONYMOUS_SESSION_P = 0.3
CHECKOUT_P = 0.22
ORDER_AFTER_CHECKOUT_P = 0.55
EMAIL_BOUNCE_P = 0.008
EMAIL_CLICK_BUY_P = 0.09
EMAIL_OPEN_BUY_P = 0.004
SMS_CLICK_P = 0.08
SMS_CLICK_BUY_P = 0.07
# Share of signups who consent to email marketing on the form (the rest only join the list).
SUBSCRIBE_EMAIL_P = 0.9
_HOUR_WEIGHTS = np.array(
    [4, 3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 7, 7, 8, 9, 10, 10, 10, 9, 7], dtype=float
)
# Shift local (UTC-5) evening peaks onto UTC hours.
_HOUR_P = np.roll(_HOUR_WEIGHTS, 5) / _HOUR_WEIGHTS.sum()


@lru_cache(maxsize=4096)
def seasonality(day: int) -> float:
    """Return the traffic multiplier of a (UTC) day number: weekends and holidays."""
    d = date(1970, 1, 1) + timedelta(days=day)
    factor = 0.7 if d.weekday() >= 5 else (1.1 if d.weekday() == 0 else 1.0)
    november_first = date(d.year, 11, 1)
    thanksgiving = november_first + timedelta(days=(3 - november_first.weekday()) % 7 + 21)
    black_friday = thanksgiving + timedelta(days=1)
    if d == black_friday:
        factor *= 3.0
    elif d == black_friday + timedelta(days=3):
        factor *= 2.5
    elif black_friday < d < black_friday + timedelta(days=3):
        factor *= 1.8
    elif d.month == 12 and 1 <= d.day <= 23:
        factor *= 1.5
    return factor


class StoreGenerator:
    """Produce the events of a store by day and answer questions about them (the truth)."""

    def __init__(self, options: StoreOptions, cache_events: int = 3_000_000) -> None:
        """Build the catalogue; events are generated lazily."""
        self.options = options
        self.catalog = Catalog(options)
        self.customers = Customers(options.seed, self.catalog.profile_created)
        self.start_ts = self.catalog.start_ts
        self.end_ts = self.catalog.end_ts
        self._cache_events = cache_events
        self._days: OrderedDict[int, EventColumns] = OrderedDict()
        self._origins: OrderedDict[int, EventColumns] = OrderedDict()
        self._day_counts: dict[int, np.ndarray] = {}
        self._order_rng = np.random.default_rng(0)
        self._flow_msgs: dict[str, list[tuple[int, ...]]] = {
            t: [fl.message_indices for fl in flows]
            for t, flows in self.catalog.flows_by_type.items()
        }

    # Day assembly -----------------------------------------------------------------------------

    def day(self, day: int) -> EventColumns:
        """Return every event of UTC day number `day`, sorted by (timestamp, id)."""
        cached = self._days.get(day)
        if cached is not None:
            self._days.move_to_end(day)
            return cached
        lo, hi = day * DAY, (day + 1) * DAY
        parts = []
        for origin in range(day - SPILL_DAYS, day + 1):
            batch = self._origin(origin)
            if len(batch):
                mask = (batch.ts >= lo) & (batch.ts < hi)
                parts.append(batch.take(mask))
        events = EventColumns.concat(parts)
        order = np.lexsort((events.id, events.ts))
        events = events.take(order)
        self._days[day] = events
        self._day_counts.setdefault(day, np.bincount(events.metric, minlength=len(c._METRICS)))
        while len(self._days) > 2 and sum(len(v) for v in self._days.values()) > self._cache_events:
            self._days.popitem(last=False)
        return events

    def _origin(self, origin: int) -> EventColumns:
        cached = self._origins.get(origin)
        if cached is not None:
            self._origins.move_to_end(origin)
            return cached
        batch = self._generate_origin(origin)
        self._origins[origin] = batch
        while len(self._origins) > 2 * (SPILL_DAYS + 1):
            self._origins.popitem(last=False)
        return batch

    # Generation -------------------------------------------------------------------------------

    def _generate_origin(self, origin: int) -> EventColumns:
        cat = self.catalog
        if (origin + 1) * DAY <= self.start_ts:
            return _EMPTY
        rng = np.random.default_rng([self.options.seed, 100, origin])
        # Order values and organic orders draw from their own stream (the customer model's).
        self._order_rng = np.random.default_rng([self.options.seed, 102, origin])
        b = _Builder(origin)
        day_start = origin * DAY
        mult = seasonality(origin)
        active = max(1, int(np.searchsorted(cat.profile_created, day_start)))
        orders: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        # Signups during the day: a form view, a submission, then the welcome flow.
        lo = int(np.searchsorted(cat.profile_created, day_start))
        hi = int(np.searchsorted(cat.profile_created, day_start + DAY))
        signups = np.arange(lo, hi, dtype=np.int64)
        if signups.size:
            t_sub = cat.profile_created[lo:hi]
            form = rng.integers(0, c.LIVE_FORMS, signups.size)
            b.add(t_sub - rng.integers(5, 300, signups.size), c.VIEWED_FORM, signups, aux=form)
            b.add(t_sub, c.SUBMITTED_FORM, signups, aux=form)
            self._flow("welcome", rng, b, signups, t_sub + 60, orders)
        anonymous_views = int(rng.poisson(0.004 * active * mult))
        if anonymous_views:
            t = day_start + rng.integers(0, DAY, anonymous_views)
            who = np.where(
                rng.random(anonymous_views) < 0.5, -1, rng.integers(0, active, anonymous_views)
            )
            b.add(t, c.VIEWED_FORM, who, aux=rng.integers(0, c.LIVE_FORMS, anonymous_views))

        # Campaigns sent today.
        for campaign in cat.campaigns_by_day.get(origin, ()):
            members = np.flatnonzero(cat.list_masks[campaign.list_index][:active])
            # Sends go out in a burst, a few hundred a second: many share a second.
            send_ts = campaign.send_ts + np.arange(members.size, dtype=np.int64) // 250
            self._send(
                rng, b, members, send_ts, KIND_CAMPAIGN, campaign.index, campaign.channel,
                campaign.open_rate, campaign.click_rate, orders,
            )  # fmt: skip

        # Organic shopping sessions.
        sessions = int(rng.poisson(self.options.session_rate * active * mult))
        if sessions:
            who = rng.integers(0, active, sessions)
            who = np.where(rng.random(sessions) < ANONYMOUS_SESSION_P, -1, who)
            start = day_start + rng.choice(24, sessions, p=_HOUR_P) * 3600
            start = start + rng.integers(0, 3600, sessions)
            views = rng.geometric(0.45, sessions)
            rows = np.repeat(np.arange(sessions), views)
            step = np.arange(rows.size) - np.repeat(np.cumsum(views) - views, views)
            b.add(
                start[rows] + step * 40, c.VIEWED_PRODUCT, who[rows],
                aux=rng.integers(0, len(c.PRODUCTS), rows.size),
            )  # fmt: skip
            known = who >= 0
            # Organic orders come from the customer model below; sessions only abandon carts.
            checkout = known & (rng.random(sessions) < CHECKOUT_P * (1 - ORDER_AFTER_CHECKOUT_P))
            t_checkout = start + views * 40 + 30
            targets = self.customers.targets(self._order_rng, who[checkout])
            values = self._basket_values(b.base + b.count, who[checkout], targets)
            b.add(t_checkout[checkout], c.STARTED_CHECKOUT, who[checkout], value=values,
                  aux=targets)  # fmt: skip
            self._flow("abandoned_cart", rng, b, who[checkout], t_checkout[checkout], orders)
            browsed = known & ~checkout & (rng.random(sessions) < 0.3)
            self._flow("browse_abandonment", rng, b, who[browsed], start[browsed], orders)

        # Organic orders of the customer model, each after a product view and a checkout.
        buyer, t_order = self.customers.organic_orders(self._order_rng, day_start, mult, active)
        if buyer.size:
            ids, values, targets, first = self._place(rng, b, t_order, buyer, 0, -1, -1)
            t_checkout = t_order - 90 - rng.exponential(300, buyer.size).astype(np.int64)
            b.add(t_checkout, c.STARTED_CHECKOUT, buyer, value=values, attr=ids, aux=targets)
            t_view = t_checkout - 30 - rng.integers(40, 400, buyer.size)
            b.add(t_view, c.VIEWED_PRODUCT, buyer, aux=first)
            orders.append((ids, t_order, buyer, values, np.zeros(buyer.size, dtype=np.int32)))
            self._flow("post_purchase", rng, b, buyer, t_order, orders)
        lapsed = int(rng.poisson(0.002 * active))
        if lapsed:
            who = rng.integers(0, active, lapsed)
            t = day_start + 15 * 3600 + rng.integers(0, 3600, lapsed)
            self._flow("win_back", rng, b, who, t, orders)

        # Refunds of a few of today's orders, a day or two later.
        if orders:
            o_ids, o_ts, o_who, o_value, _ = (np.concatenate(x) for x in zip(*orders, strict=True))
            refunded = rng.random(o_ids.size) < 0.04
            share = np.where(rng.random(o_ids.size) < 0.7, 1.0, rng.uniform(0.3, 0.7, o_ids.size))
            amount = np.maximum(np.round(o_value * share).astype(np.int64), 1)
            t = o_ts + DAY + rng.integers(0, DAY, o_ids.size)
            b.add(
                t[refunded], c.REFUNDED_ORDER, o_who[refunded],
                value=amount[refunded], attr=o_ids[refunded],
            )  # fmt: skip

        self._subscriptions(origin, b, signups, cat.profile_created[lo:hi])

        events = b.build()
        # Nothing may land beyond the spill window.
        limit = day_start + (SPILL_DAYS + 1) * DAY - 1
        if len(events) and int(events.ts.max()) > limit:
            events = EventColumns(
                np.minimum(events.ts, limit), *(getattr(events, n) for n in _COLUMNS[1:])
            )
        return events

    # Subscriptions ------------------------------------------------------------------------------

    def _subscriptions(
        self, origin: int, b: _Builder, signups: np.ndarray, t_sub: np.ndarray
    ) -> None:
        """Add each signup's "Subscribed to List" (the Newsletter list, as the form submits) and,
        for those who consent, "Subscribed to Email Marketing". A random stream of their own and
        added last of the day, so the store's other events (and their ids) stay as they were."""
        if signups.size == 0:
            return
        rng = np.random.default_rng([self.options.seed, 101, origin])
        b.add(t_sub + 1, c.SUBSCRIBED_TO_LIST, signups, aux=0)
        consent = rng.random(signups.size) < SUBSCRIBE_EMAIL_P
        b.add(t_sub[consent] + 2, c.SUBSCRIBED_TO_EMAIL, signups[consent])

    def _flow(
        self,
        flow_type: str,
        rng: np.random.Generator,
        b: _Builder,
        who: np.ndarray,
        trigger_ts: np.ndarray,
        orders: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        instances = self._flow_msgs.get(flow_type)
        if not instances or who.size == 0:
            return
        flows = self.catalog.flows_by_type[flow_type]
        which = who % len(instances)
        t = trigger_ts.astype(np.int64)
        alive = np.ones(who.size, dtype=bool)
        for action in flows[0].actions:
            if action.kind == "delay":
                t = t + action.delay_s
                alive &= rng.random(who.size) < 0.75  # some leave the flow (bought, unsubscribed)
                continue
            position = flows[0].message_indices.index(action.message_index)
            message = np.array([inst[position] for inst in instances], dtype=np.int32)[which]
            send = alive.copy()
            if action.kind == "sms":
                send &= self.catalog.list_masks[c.SMS_LIST][who]
            self._send(
                rng, b, who[send], t[send], KIND_FLOW, message[send], action.kind,
                0.38, 0.035, orders,
            )  # fmt: skip

    def _send(
        self,
        rng: np.random.Generator,
        b: _Builder,
        who: np.ndarray,
        send_ts: np.ndarray,
        kind: int,
        source: int | np.ndarray,
        channel: str,
        open_rate: float,
        click_rate: float,
        orders: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        """Add one message per profile and everything it causes: opens, clicks, orders."""
        n = who.size
        if n == 0:
            return
        src = source if isinstance(source, np.ndarray) else np.full(n, source, dtype=np.int32)
        if channel == "sms":
            b.add(send_ts, c.RECEIVED_SMS, who, kind, src)
            clicked = rng.random(n) < SMS_CLICK_P
            t_click = send_ts + 30 + rng.exponential(600, n).astype(np.int64)
            click_ids = b.add(t_click[clicked], c.CLICKED_SMS, who[clicked], kind, src[clicked])
            self._orders(rng, b, who[clicked], t_click[clicked], kind, src[clicked], click_ids,
                         SMS_CLICK_BUY_P, orders)  # fmt: skip
            return
        bounced = rng.random(n) < EMAIL_BOUNCE_P
        b.add(send_ts[bounced], c.BOUNCED_EMAIL, who[bounced], kind, src[bounced])
        ok = ~bounced
        b.add(send_ts[ok], c.RECEIVED_EMAIL, who[ok], kind, src[ok])
        opened = ok & (rng.random(n) < open_rate)
        delay = np.minimum(rng.exponential(7200, n), 36 * 3600).astype(np.int64) + 5
        t_open = send_ts + delay
        open_ids = b.add(t_open[opened], c.OPENED_EMAIL, who[opened], kind, src[opened])
        again = opened & (rng.random(n) < 0.3)
        t_again = t_open + 60 + rng.exponential(3600, n).astype(np.int64)
        b.add(t_again[again], c.OPENED_EMAIL, who[again], kind, src[again])
        clicked = opened & (rng.random(n) < click_rate / open_rate)
        t_click = t_open + 2 + rng.exponential(90, n).astype(np.int64)
        all_open_ids = np.full(n, -1, dtype=np.int64)
        all_open_ids[opened] = open_ids
        click_ids = b.add(t_click[clicked], c.CLICKED_EMAIL, who[clicked], kind, src[clicked])
        self._orders(rng, b, who[clicked], t_click[clicked], kind, src[clicked], click_ids,
                     EMAIL_CLICK_BUY_P, orders)  # fmt: skip
        # A few buy after only opening (attributed to the open).
        open_buy = opened & ~clicked & (rng.random(n) < EMAIL_OPEN_BUY_P)
        self._orders(rng, b, who[open_buy], t_open[open_buy] + 600, kind, src[open_buy],
                     all_open_ids[open_buy], 1.0, orders)  # fmt: skip
        unsub = ok & (rng.random(n) < 0.002)
        b.add(t_open[unsub] + 30, c.UNSUBSCRIBED, who[unsub], kind, src[unsub])
        spam = ok & (rng.random(n) < 0.0003)
        b.add(t_open[spam] + 20, c.MARKED_SPAM, who[spam], kind, src[spam])

    def _orders(
        self,
        rng: np.random.Generator,
        b: _Builder,
        who: np.ndarray,
        t_touch: np.ndarray,
        kind: int,
        src: np.ndarray,
        touch_ids: np.ndarray,
        rate: float,
        orders: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        n = who.size
        if n == 0:
            return
        buys = rng.random(n) < rate
        product = rng.integers(0, len(c.PRODUCTS), n)
        b.add(t_touch[buys] + 20, c.VIEWED_PRODUCT, who[buys], aux=product[buys])
        t_order = t_touch + 120 + np.minimum(rng.exponential(1200, n), 3 * 3600).astype(np.int64)
        ids, value, _, _ = self._place(rng, b, t_order[buys], who[buys], kind, src[buys],
                                    touch_ids[buys])  # fmt: skip
        orders.append((ids, t_order[buys], who[buys], value, src[buys]))

    def _basket_values(self, first_id: int, who: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Return the value (cents) of the baskets of events numbered from `first_id`."""
        seed = self.options.seed
        staple = self.customers.staple
        out = np.empty(who.size, dtype=np.int64)
        for k, (p, t) in enumerate(zip(who.tolist(), targets.tolist(), strict=True)):
            lines, _, discount = basket(seed, first_id + k, int(staple[p]) if p >= 0 else -1, t)
            out[k] = sum(line.row_cents for line in lines) - discount
        return out

    def _place(
        self,
        rng: np.random.Generator,
        b: _Builder,
        ts: np.ndarray,
        who: np.ndarray,
        kind: int,
        src: int | np.ndarray,
        attr: int | np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Add Placed Orders with their baskets and one Ordered Product per line.

        Return the orders' ids, values (cents, after discount), basket targets and first
        products. The basket
        is a function of the order's id, so rendering rebuilds the same Items.
        """
        n = who.size
        targets = self.customers.targets(self._order_rng, who)
        seed, staple = self.options.seed, self.customers.staple
        first_id = b.base + b.count
        values = np.empty(n, dtype=np.int64)
        first = np.empty(n, dtype=np.int32)
        line_order: list[int] = []
        line_product: list[int] = []
        line_cents: list[int] = []
        for k, (p, t) in enumerate(zip(who.tolist(), targets.tolist(), strict=True)):
            lines, _, discount = basket(seed, first_id + k, int(staple[p]), t)
            values[k] = sum(line.row_cents for line in lines) - discount
            first[k] = lines[0].product
            for line in lines:
                line_order.append(k)
                line_product.append(line.product)
                line_cents.append(line.row_cents)
        ids = b.add(ts, c.PLACED_ORDER, who, kind, src, values, attr, aux=targets)
        at = np.asarray(line_order, dtype=np.int64)
        b.add(ts[at], c.ORDERED_PRODUCT, who[at], value=np.asarray(line_cents, dtype=np.int64),
              attr=ids[at], aux=np.asarray(line_product, dtype=np.int32))  # fmt: skip
        return ids, values, targets, first

    # Truth ------------------------------------------------------------------------------------

    def day_counts(self, day: int) -> np.ndarray:
        """Return the number of events per metric index on a whole day."""
        counts = self._day_counts.get(day)
        if counts is None:
            self.day(day)
            counts = self._day_counts[day]
        return counts

    def count_events(
        self,
        since: int | None = None,
        until: int | None = None,
        metric_id: str | None = None,
        profile_id: str | None = None,
    ) -> int:
        """Count events with `since <= timestamp < until` (unix seconds), as the API lists them.

        `since` defaults to the start of history and `until` to just after `end`; a metric or
        profile id that the store does not know counts zero.
        """
        lo = self.start_ts if since is None else max(since, self.start_ts)
        hi = self.end_ts + 1 if until is None else until
        metric = None
        if metric_id is not None:
            found = self.catalog.metric_by_id.get(metric_id)
            if found is None:
                return 0
            metric = found.index
        profile = None
        if profile_id is not None:
            profile = self.catalog.profile_index(profile_id)
            if profile is None:
                return 0
        total = 0
        for day in range(lo // DAY, (hi - 1) // DAY + 1 if hi > lo else lo // DAY):
            whole = day * DAY >= lo and (day + 1) * DAY <= hi
            if whole and profile is None:
                counts = self.day_counts(day)
                total += int(counts.sum() if metric is None else counts[metric])
                continue
            ev = self.day(day)
            mask = (ev.ts >= lo) & (ev.ts < hi)
            if metric is not None:
                mask &= ev.metric == metric
            if profile is not None:
                mask &= ev.profile == profile
            total += int(mask.sum())
        return total

    def events_between(self, since: int, until: int) -> EventColumns:
        """Return all events with `since <= timestamp < until`, sorted (for reports and tests)."""
        parts = []
        for day in range(since // DAY, (until - 1) // DAY + 1):
            ev = self.day(day)
            parts.append(ev.take((ev.ts >= since) & (ev.ts < until)))
        return EventColumns.concat(parts)
