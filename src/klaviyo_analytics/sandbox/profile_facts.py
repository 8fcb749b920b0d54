"""Per-profile facts for `additional-fields[profile]`: subscriptions and predictive analytics.

Both are consistent with the store. Orders and suppressions come from one pass over the
generated days up to "now" (a few numpy columns per profile, never the events themselves); the
predictions come from the generator's own customer model (customers.py: true rates, lifetimes and
spend), so a CLV model fitted to the synced events can be compared with "Klaviyo's".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox import generator as g
from klaviyo_analytics.sandbox.catalog import DAY
from klaviyo_analytics.sandbox.generator import StoreGenerator, seasonality

SUPPRESSION_REASONS = ("", "HARD_BOUNCE", "SPAM_COMPLAINT", "UNSUBSCRIBE")
_SUPPRESSING = {c.BOUNCED_EMAIL: 1, c.MARKED_SPAM: 2, c.UNSUBSCRIBED: 3}
YEAR_DAYS = 365
NO_NEXT_ORDER_DAYS = 100 * YEAR_DAYS


@dataclass(frozen=True)
class Facts:
    """Columns over every profile, as of one moment."""

    now: int
    orders: np.ndarray  # placed orders
    order_cents: np.ndarray  # their summed value
    last_order: np.ndarray  # unix seconds, 0 when none
    suppressed_at: np.ndarray  # unix seconds of the first suppressing event, 0 when none
    reason: np.ndarray  # index into SUPPRESSION_REASONS


class ProfileFacts:
    """Compute and cache per-profile facts; the cache moves forward with the store's clock."""

    def __init__(self, generator: StoreGenerator) -> None:
        """Nothing is computed until the first question."""
        self.gen = generator
        n = generator.options.profiles
        self._day = generator.start_ts // DAY  # first day not yet folded in
        self._orders = np.zeros(n, dtype=np.int64)
        self._cents = np.zeros(n, dtype=np.int64)
        self._last = np.zeros(n, dtype=np.int64)
        self._supp = np.zeros(n, dtype=np.int64)
        self._reason = np.zeros(n, dtype=np.int8)
        self._snapshot: Facts | None = None
        self._rate: tuple[int, np.ndarray] | None = None
        self._alive: tuple[int, np.ndarray] | None = None

    def _fold(self, day: int, until: int, arrays: tuple[np.ndarray, ...]) -> None:
        orders, cents, last, supp, reason = arrays
        ev = self.gen.day(day)
        keep = (ev.ts <= until) & (ev.profile >= 0)
        placed = keep & (ev.metric == c.PLACED_ORDER)
        who = ev.profile[placed]
        n = orders.size
        orders += np.bincount(who, minlength=n)
        cents += np.bincount(who, weights=ev.value[placed], minlength=n).astype(np.int64)
        np.maximum.at(last, who, ev.ts[placed])
        hits = keep & np.isin(ev.metric, list(_SUPPRESSING))
        profiles, first = np.unique(ev.profile[hits], return_index=True)
        fresh = supp[profiles] == 0
        supp[profiles[fresh]] = ev.ts[hits][first[fresh]]
        codes = np.array([_SUPPRESSING[int(m)] for m in ev.metric[hits][first[fresh]]], np.int8)
        reason[profiles[fresh]] = codes

    def at(self, now: int) -> Facts:
        """Return the facts of every profile as of `now` (events with timestamp <= now)."""
        if self._snapshot is not None and self._snapshot.now == now:
            return self._snapshot
        whole = (now + 1) // DAY  # days strictly before this one are complete
        state = (self._orders, self._cents, self._last, self._supp, self._reason)
        while self._day < whole:
            self._fold(self._day, self._day * DAY + DAY - 1, state)
            self._day += 1
        copies = tuple(a.copy() for a in state)
        if now >= whole * DAY:
            self._fold(whole, now, copies)
        self._snapshot = Facts(now, *copies)
        return self._snapshot

    def yearly_orders(self, facts: Facts) -> np.ndarray:
        """Return each profile's expected orders over the 365 days after `facts.now`.

        The organic part is the customer model's (customers.py) with each profile's true
        rates: P(alive | last order) * lambda/mu * (1 - exp(-mu * 365)), times the year's mean
        seasonality; campaign-driven orders of list members come on top.
        """
        if self._rate is not None and self._rate[0] == facts.now:
            return self._rate[1]
        cat = self.gen.catalog
        opts = self.gen.options
        model = self.gen.customers
        start = facts.now // DAY
        season = sum(seasonality(d) for d in range(start, start + YEAR_DAYS)) / YEAR_DAYS
        index = np.arange(opts.profiles)
        alive = model.alive_probability(index, facts.last_order, facts.now, cat.start_ts)
        rate = model.expected_orders(index, alive, YEAR_DAYS) * season
        repeats = YEAR_DAYS / opts.days
        for cp in cat.campaigns:
            if cp.channel == "sms":
                p = g.SMS_CLICK_P * g.SMS_CLICK_BUY_P
            else:
                p = (1 - g.EMAIL_BOUNCE_P) * (
                    cp.click_rate * g.EMAIL_CLICK_BUY_P
                    + (cp.open_rate - cp.click_rate) * g.EMAIL_OPEN_BUY_P
                )
            rate += cat.list_masks[cp.list_index] * (p * repeats)
        self._rate = (facts.now, rate)
        self._alive = (facts.now, alive)
        return rate

    def alive(self, facts: Facts) -> np.ndarray:
        """Return each profile's probability of still being a customer at `facts.now`."""
        if self._alive is None or self._alive[0] != facts.now:
            self.yearly_orders(facts)
        assert self._alive is not None
        return self._alive[1]

    def expected_order_cents(self, index: int) -> float:
        """Return a profile's expected order target under the model (cents)."""
        return float(self.gen.customers.expected_spend_cents(np.array([index]))[0])


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def predictive_analytics(
    facts: Facts, rate: float, alive: float, aov_cents: float, index: int, sms: bool
) -> dict[str, object]:
    """Render one profile's `predictive_analytics` (money in the store's currency units).

    `historic_*` are exact (its Placed Order events up to now); the predictions are the
    customer model's expectation over the next 365 days: `rate` orders, each worth the
    profile's expected order value `aov_cents`, and `1 - alive` as the churn probability.
    """
    aov = aov_cents / 100
    historic = int(facts.order_cents[index]) / 100
    count = int(facts.orders[index])
    predicted = rate * aov
    last = int(facts.last_order[index])
    gap_days = YEAR_DAYS / rate if rate > 0 else None
    # A customer with a vanishing rate has no next order to expect: beyond a century (where
    # the date would also soon leave what a date-time can hold, year 9999) there is none.
    next_order = None
    if gap_days and last and gap_days <= NO_NEXT_ORDER_DAYS:
        next_order = _iso(max(last, facts.now) + int(gap_days * DAY))
    return {
        "historic_clv": round(historic, 2),
        "predicted_clv": round(predicted, 2),
        "total_clv": round(historic + predicted, 2),
        "historic_number_of_orders": count,
        "predicted_number_of_orders": round(rate, 4),
        "average_days_between_orders": round(gap_days, 1) if gap_days and count > 1 else None,
        "average_order_value": round(historic / count if count else aov, 2),
        "churn_probability": round(1.0 - alive, 4),
        "expected_date_of_next_order": next_order,
        "ranked_channel_affinity": ["sms", "email"] if sms else ["email"],
    }


def subscriptions(
    facts: Facts, index: int, created: int, email_member: bool, sms: bool
) -> dict[str, object]:
    """Render one profile's `subscriptions` from its consent (list membership) and suppressions.

    Members of an email list consented at creation; a hard bounce, spam complaint or
    unsubscribe suppresses email marketing from that moment; members of the SMS list have SMS
    consent from their creation.
    """
    supp_ts = int(facts.suppressed_at[index])
    reason = SUPPRESSION_REASONS[int(facts.reason[index])]
    suppression = [{"reason": reason, "timestamp": _iso(supp_ts)}] if supp_ts else []
    if reason == "UNSUBSCRIBE":
        consent = "UNSUBSCRIBED"
    else:
        consent = "SUBSCRIBED" if email_member else "NEVER_SUBSCRIBED"
    email = {
        "can_receive_email_marketing": not supp_ts,
        "consent": consent,
        "consent_timestamp": _iso(supp_ts)
        if reason == "UNSUBSCRIBE"
        else (_iso(created) if email_member else None),
        "last_updated": _iso(supp_ts or created),
        "method": "FORM",
        "method_detail": "",
        "custom_method_detail": None,
        "double_optin": False,
        "suppression": suppression,
        "list_suppressions": [],
    }
    sms_marketing = {
        "can_receive_sms_marketing": sms,
        "consent": "SUBSCRIBED" if sms else "NEVER_SUBSCRIBED",
        "consent_timestamp": _iso(created) if sms else None,
        "method": "TEXT" if sms else None,
        "method_detail": "JOIN" if sms else "",
        "last_updated": _iso(created) if sms else None,
    }
    return {"email": {"marketing": email}, "sms": {"marketing": sms_marketing}}
