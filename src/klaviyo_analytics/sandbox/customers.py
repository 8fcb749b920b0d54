"""The store's customers: a stated purchase model, its true parameters, and order baskets.

The generative model (its parameters are `TRUTH`, so fitted CLV models can be checked):

* each profile `i` has a purchase rate `lambda_i ~ Gamma(shape=r, rate=alpha)` per day and a
  dropout rate `mu_i ~ Gamma(shape=s, rate=beta)`; it stays a customer for an exponential
  lifetime `tau_i ~ Exp(mu_i)` from its creation, and while alive places organic orders as a
  Poisson process of intensity `lambda_i * seasonality(day)` (Pareto/NBD, of which BG/NBD is the
  standard approximation; r and alpha mean the same in both);
* each customer has a spend rate `nu_i ~ Gamma(shape=q, rate=gamma)`; an order's *target*
  value is `z ~ Gamma(shape=p, rate=nu_i)` cents (Gamma-Gamma), and its basket is filled from the
  catalogue at list prices until it reaches the target (`basket`), so the order value is the
  basket's subtotal less any discount code.

Orders that marketing causes (a click, then a purchase) come on top, for list members, and use
the same spend. Baskets repeat like real ones: each customer has a staple consumable that is
in most of their orders; durables are picked by popularity and rarely bought twice.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

DAY = 86_400

__all__ = [
    "CATALOGUE",
    "DISCOUNT_CODES",
    "TRUTH",
    "Customers",
    "Line",
    "Product",
    "TrueModel",
    "basket",
]


@dataclass(frozen=True)
class Product:
    """One product of the catalogue; `consumable` ones are re-bought."""

    sku: str
    product_id: str
    name: str
    price_cents: int
    category: str
    brand: str
    consumable: bool
    popularity: float


_P = (
    # name, price, category, brand, consumable, popularity
    ("Trail Runner Shoe", 11900, "Footwear", "Ridgeline", False, 3.0),
    ("Merino Crew Sock", 1800, "Apparel", "Woolly", True, 6.0),
    ("Down Vest", 14900, "Outerwear", "Ridgeline", False, 1.5),
    ("Canvas Tote", 3200, "Bags", "Harbor", False, 2.0),
    ("Rain Shell", 18900, "Outerwear", "Northpeak", False, 1.5),
    ("Wool Beanie", 2800, "Apparel", "Woolly", False, 3.0),
    ("Insulated Bottle", 3400, "Gear", "Harbor", False, 3.0),
    ("Hiking Pant", 8900, "Apparel", "Northpeak", False, 2.5),
    ("Base Layer Top", 6900, "Apparel", "Woolly", False, 2.5),
    ("Camp Mug", 1600, "Gear", "Harbor", False, 2.0),
    ("Daypack 22L", 9900, "Bags", "Northpeak", False, 1.5),
    ("Fleece Pullover", 7900, "Apparel", "Ridgeline", False, 2.0),
    ("Trail Coffee Beans 1lb", 1700, "Food", "Basecamp Roasters", True, 7.0),
    ("Energy Bar 12-Pack", 2400, "Food", "Summit Fuel", True, 6.0),
    ("Mineral Sunscreen SPF50", 1500, "Care", "Sunward", True, 5.0),
    ("Lip Balm 3-Pack", 900, "Care", "Sunward", True, 4.0),
    ("Fuel Canister 230g", 700, "Gear", "Blaze", True, 4.0),
    ("Wax Bar Proofing", 1200, "Care", "Northpeak", True, 2.0),
)
CATALOGUE: tuple[Product, ...] = tuple(
    Product(f"SKU-{1000 + i}", str(7_000_000 + i), name, price, cat, brand, cons, pop)
    for i, (name, price, cat, brand, cons, pop) in enumerate(_P)
)
_CONSUMABLES = np.array([i for i, p in enumerate(CATALOGUE) if p.consumable], dtype=np.int64)
_POPULARITY: list[float] = (np.cumsum([p.popularity for p in CATALOGUE]) / sum(
    p.popularity for p in CATALOGUE)).tolist()  # fmt: skip
_PRICES = [p.price_cents for p in CATALOGUE]
_LAST = len(CATALOGUE) - 1
# Code, share off the subtotal (percent).
DISCOUNT_CODES: tuple[tuple[str, int], ...] = (("WELCOME10", 10), ("SUMMER15", 15), ("VIP20", 20))
DISCOUNT_P = 0.18
STAPLE_P = 0.6
MAX_LINES = 6


@dataclass(frozen=True)
class TrueModel:
    """The generator's true purchase and spend parameters (days and cents)."""

    r: float = 0.6
    alpha: float = 100.0
    s: float = 2.0
    beta: float = 730.0
    p: float = 4.0
    q: float = 3.0
    gamma: float = 4000.0

    def mean_spend_cents(self) -> float:
        """Return the population's mean order target, `p * gamma / (q - 1)`."""
        return self.p * self.gamma / (self.q - 1)


TRUTH = TrueModel()


@dataclass(frozen=True)
class Line:
    """One line of an order."""

    product: int
    quantity: int

    @property
    def row_cents(self) -> int:
        """Return the line's total at list price."""
        return CATALOGUE[self.product].price_cents * self.quantity


def _splitmix(state: int) -> tuple[int, float]:
    state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return state, (z >> 11) / float(1 << 53)


def basket(seed: int, number: int, staple: int, target_cents: int) -> tuple[list[Line], int, int]:
    """Return an order's lines, its discount code index (-1 for none) and discount in cents.

    A pure function of its arguments, so the Placed Order, its Ordered Product events and the
    rendering agree: the staple (when not -1) comes first with probability STAPLE_P, then
    products by popularity while each keeps the subtotal within half its price of the target
    (at least one line), so the subtotal is the target to within a product's price.
    """
    state = (seed * 0x632BE59BD9B4E019 + number) & 0xFFFFFFFFFFFFFFFF
    quantities: dict[int, int] = {}
    subtotal = 0
    state, u = _splitmix(state)
    if staple >= 0 and u < STAPLE_P:
        state, u = _splitmix(state)
        quantities[staple] = 1 + int(u * 2.2)
        subtotal += _PRICES[staple] * quantities[staple]
    while len(quantities) < MAX_LINES:
        state, u = _splitmix(state)
        product = min(bisect_right(_POPULARITY, u), _LAST)
        price = _PRICES[product]
        # Stop at the product that would overshoot the target by more than half its price.
        if quantities and subtotal + price / 2 > target_cents:
            break
        quantities[product] = quantities.get(product, 0) + 1
        subtotal += price
    state, u = _splitmix(state)
    code, discount = -1, 0
    if u < DISCOUNT_P:
        state, u = _splitmix(state)
        code = min(int(u * len(DISCOUNT_CODES)), len(DISCOUNT_CODES) - 1)
        discount = subtotal * DISCOUNT_CODES[code][1] // 100
    lines = [Line(k, v) for k, v in quantities.items()]
    return lines, code, discount


class Customers:
    """Per-profile draws of the model: rates, lifetimes, spend and staple product."""

    def __init__(self, seed: int, created: np.ndarray, truth: TrueModel = TRUTH) -> None:
        """Draw every profile's parameters from its own seed stream (`[seed, 7]`)."""
        self.truth = truth
        self.seed = seed
        n = created.size
        rng = np.random.default_rng([seed, 7])
        self.rate = rng.gamma(truth.r, 1 / truth.alpha, n)  # orders per day while alive
        self.dropout = rng.gamma(truth.s, 1 / truth.beta, n)  # per day
        lifetime = rng.exponential(1.0, n) / self.dropout
        self.death_ts = created + np.minimum(lifetime, 1e6).astype(np.int64) * DAY
        self.created = created
        self.spend_rate = rng.gamma(truth.q, 1 / truth.gamma, n)  # nu_i, per cent
        self.staple = _CONSUMABLES[rng.integers(0, _CONSUMABLES.size, n)]

    def targets(self, rng: np.random.Generator, who: np.ndarray) -> np.ndarray:
        """Return order target values (cents) for these profiles (-1: anonymous, model mean)."""
        nu = np.where(
            who >= 0, self.spend_rate[np.maximum(who, 0)], (self.truth.q - 1) / self.truth.gamma
        )
        out: np.ndarray = np.maximum(np.round(rng.gamma(self.truth.p, 1 / nu)), 100).astype(
            np.int64
        )
        return out

    def organic_orders(
        self, rng: np.random.Generator, day_start: int, multiplier: float, active: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (profile, timestamp) of the organic orders placed on one day.

        Candidates are the first `active` profiles alive at some point of the day; each draws a
        Poisson count at its whole-day rate, and orders outside its lifetime are dropped (exact
        thinning of the process to the alive interval).
        """
        day_end = day_start + DAY
        alive = np.flatnonzero(
            (self.created[:active] < day_end) & (self.death_ts[:active] > day_start)
        )
        counts = rng.poisson(self.rate[alive] * multiplier)
        who = np.repeat(alive, counts)
        ts = day_start + rng.integers(0, DAY, who.size)
        keep = (ts >= self.created[who]) & (ts < self.death_ts[who])
        return who[keep], ts[keep]

    def alive_probability(
        self, index: np.ndarray, last_ts: np.ndarray, now: int, observed_from: int
    ) -> np.ndarray:
        """Return P(alive at `now`) given each profile's true rates and last order.

        Pareto/NBD with known individual rates: `1 / (1 + mu/(lambda+mu) * (exp((lambda+mu)
        * (now - last)) - 1))`, `last` being the last order, else the start of what was
        observed (the profile's creation or `observed_from`, the first generated day).
        """
        lam = self.rate[index]
        mu = self.dropout[index]
        since = np.maximum(np.maximum(last_ts[index], self.created[index]), observed_from)
        gap_days = np.maximum(now - since, 0) / DAY
        exponent = np.minimum((lam + mu) * gap_days, 700.0)
        out: np.ndarray = 1.0 / (1.0 + mu / (lam + mu) * (np.exp(exponent) - 1.0))
        return out

    def expected_orders(self, index: np.ndarray, alive: np.ndarray, days: float) -> np.ndarray:
        """Return the expected organic orders over the next `days`: `P(alive) * lambda/mu *
        (1 - exp(-mu * days))`."""
        lam = self.rate[index]
        mu = self.dropout[index]
        out: np.ndarray = alive * lam / mu * (1.0 - np.exp(-mu * days))
        return out

    def expected_spend_cents(self, index: np.ndarray) -> np.ndarray:
        """Return each profile's expected order target, `p / nu_i`."""
        out: np.ndarray = self.truth.p / self.spend_rate[index]
        return out
