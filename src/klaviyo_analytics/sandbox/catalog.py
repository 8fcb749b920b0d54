"""Build the store's static entities: metrics, profiles, lists, segments, forms, campaigns, flows.

Everything here is small (profiles are numpy columns, rendered only when asked for) and is built
once from the store options, so the same options always give the same catalogue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.customers import CATALOGUE

DAY = 86_400
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Metric indices, used as the event columns' metric codes.
RECEIVED_EMAIL = 0
OPENED_EMAIL = 1
CLICKED_EMAIL = 2
BOUNCED_EMAIL = 3
MARKED_SPAM = 4
UNSUBSCRIBED = 5
RECEIVED_SMS = 6
CLICKED_SMS = 7
VIEWED_PRODUCT = 8
STARTED_CHECKOUT = 9
PLACED_ORDER = 10
REFUNDED_ORDER = 11
VIEWED_FORM = 12
SUBMITTED_FORM = 13
# Consent events Klaviyo records when a signup joins a list and consents to email marketing.
SUBSCRIBED_TO_LIST = 14
SUBSCRIBED_TO_EMAIL = 15
ORDERED_PRODUCT = 16

KLAVIYO = {"object": "integration", "id": "0rG4eQ", "key": "klaviyo", "name": "Klaviyo",
           "category": "Internal"}  # fmt: skip
SHOPIFY = {"object": "integration", "id": "0eMvjm", "key": "shopify", "name": "Shopify",
           "category": "eCommerce"}  # fmt: skip

_METRICS: tuple[tuple[str, dict[str, str]], ...] = (
    ("Received Email", KLAVIYO),
    ("Opened Email", KLAVIYO),
    ("Clicked Email", KLAVIYO),
    ("Bounced Email", KLAVIYO),
    ("Marked Email as Spam", KLAVIYO),
    ("Unsubscribed", KLAVIYO),
    ("Received SMS", KLAVIYO),
    ("Clicked SMS", KLAVIYO),
    ("Viewed Product", SHOPIFY),
    ("Started Checkout", SHOPIFY),
    ("Placed Order", SHOPIFY),
    ("Refunded Order", SHOPIFY),
    ("Viewed Form", KLAVIYO),
    ("Submitted Form", KLAVIYO),
    ("Subscribed to List", KLAVIYO),
    ("Subscribed to Email Marketing", KLAVIYO),
    ("Ordered Product", SHOPIFY),
)

FLOW_TYPES = ("welcome", "abandoned_cart", "browse_abandonment", "post_purchase", "win_back")
_FLOW_NAMES = {
    "welcome": "Welcome Series",
    "abandoned_cart": "Abandoned Cart",
    "browse_abandonment": "Browse Abandonment",
    "post_purchase": "Post-Purchase Thank You",
    "win_back": "Win-Back",
}
_FLOW_TRIGGERS = {
    "welcome": "Added to List",
    "abandoned_cart": "Metric",
    "browse_abandonment": "Metric",
    "post_purchase": "Metric",
    "win_back": "Metric",
}
# Each flow's actions: (channel or "delay", seconds of delay before the next step).
_FLOW_STEPS: dict[str, tuple[tuple[str, int], ...]] = {
    "welcome": (("email", 0), ("delay", 2 * DAY), ("email", 0)),
    "abandoned_cart": (("delay", 4 * 3600), ("email", 0), ("delay", DAY), ("sms", 0)),
    "browse_abandonment": (("delay", 2 * 3600), ("email", 0)),
    "post_purchase": (("delay", DAY), ("email", 0)),
    "win_back": (("email", 0),),
}
_LISTS = (
    ("Newsletter", 0.70, "single_opt_in"),
    ("VIP Customers", 0.10, "single_opt_in"),
    ("SMS Subscribers", 0.25, "double_opt_in"),
    ("Product Launch Waitlist", 0.20, "double_opt_in"),
    ("Win-Back Audience", 0.15, "single_opt_in"),
)
SMS_LIST = 2
_SEGMENTS = (
    ("Engaged (90 days)", 0.45),
    ("Repeat Buyers", 0.12),
    ("Lapsed Customers", 0.20),
    ("High Value", 0.05),
)
_FORMS = (
    ("Newsletter Popup", "live"),
    ("Footer Signup", "live"),
    ("Spin to Win", "live"),
    ("Holiday Teaser", "draft"),
)
LIVE_FORMS = 3
_THEMES = (
    "Spring Sale", "New Arrivals", "Weekend Flash Sale", "Staff Picks", "Back in Stock",
    "Summer Essentials", "Members Only", "Last Chance", "Gift Guide", "Free Shipping Week",
)  # fmt: skip
# (sku, name, list price in cents) of every product; the details are in `customers.CATALOGUE`.
PRODUCTS = tuple((p.sku, p.name, p.price_cents) for p in CATALOGUE)
FIRST_NAMES = ("Ava", "Liam", "Mia", "Noah", "Emma", "Omar", "Zoe", "Ethan", "Lena", "Kai")
LAST_NAMES = ("Smith", "Garcia", "Chen", "Okafor", "Novak", "Rossi", "Kim", "Silva", "Berg")


def short_id(seed: int, kind: str, index: int, length: int = 6) -> str:
    """Return a deterministic Klaviyo-like id for the `index`-th entity of `kind`."""
    digest = hashlib.blake2b(f"{seed}:{kind}:{index}".encode(), digest_size=16).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return "".join(chars)


@dataclass(frozen=True)
class Metric:
    """One metric of the account."""

    index: int
    id: str
    name: str
    integration: dict[str, str]
    created: int


@dataclass(frozen=True)
class Group:
    """A list or a segment: a named set of profiles given by a membership rate."""

    index: int
    id: str
    name: str
    rate: float
    created: int
    updated: int
    opt_in: str = "single_opt_in"


@dataclass(frozen=True)
class Form:
    """A signup form."""

    index: int
    id: str
    name: str
    status: str
    created: int
    updated: int


@dataclass(frozen=True)
class Campaign:
    """A sent campaign with its single message."""

    index: int
    id: str
    message_id: str
    template_id: str | None
    name: str
    channel: str
    list_index: int
    send_ts: int
    open_rate: float
    click_rate: float
    subject: str


@dataclass(frozen=True)
class FlowMessage:
    """One message of a flow (a send action's content)."""

    index: int
    id: str
    action_id: str
    flow_index: int
    channel: str
    name: str
    template_id: str | None


@dataclass(frozen=True)
class FlowAction:
    """One step of a flow: a send or a delay."""

    id: str
    flow_index: int
    kind: str
    delay_s: int
    message_index: int | None


@dataclass(frozen=True)
class Flow:
    """An automated flow and its actions."""

    index: int
    id: str
    name: str
    flow_type: str
    trigger_type: str
    created: int
    actions: tuple[FlowAction, ...]

    @property
    def message_indices(self) -> tuple[int, ...]:
        """Return the flow's message indices in step order."""
        return tuple(a.message_index for a in self.actions if a.message_index is not None)


class Catalog:
    """Hold every static entity of a store, built deterministically from its options."""

    def __init__(self, options: StoreOptions) -> None:
        """Build the catalogue; raise nothing (options are validated on their own)."""
        self.options = options
        seed = options.seed
        self.end_ts = int(options.end.timestamp())
        self.start_ts = self.end_ts - options.days * DAY
        born = self.start_ts - 400 * DAY
        self.metrics = tuple(
            Metric(i, short_id(seed, "metric", i), name, integration, born + i * 3600)
            for i, (name, integration) in enumerate(_METRICS)
        )
        self.metric_by_id = {m.id: m for m in self.metrics}
        self._build_profiles()
        self.lists = tuple(
            Group(i, short_id(seed, "list", i), name, rate, born + i * DAY, born + 30 * DAY, opt)
            for i, (name, rate, opt) in enumerate(_LISTS)
        )
        self.segments = tuple(
            Group(i, short_id(seed, "segment", i), name, rate, born + i * DAY, born + 40 * DAY)
            for i, (name, rate) in enumerate(_SEGMENTS)
        )
        self.forms = tuple(
            Form(i, short_id(seed, "form", i), name, status, born + i * DAY, born + 50 * DAY)
            for i, (name, status) in enumerate(_FORMS)
        )
        self.list_masks = tuple(self._membership("list", g.rate, g.index) for g in self.lists)
        self.segment_masks = tuple(
            self._membership("segment", g.rate, g.index) for g in self.segments
        )
        self._build_campaigns()
        self._build_flows()
        self.templates: tuple[tuple[str, str, int], ...] = tuple(
            [(c.template_id, f"{c.name} template", c.send_ts - 4 * DAY)
             for c in self.campaigns if c.template_id is not None]
            + [(m.template_id, f"{m.name} template", born + 60 * DAY)
               for m in self.flow_messages if m.template_id is not None]
        )  # fmt: skip
        self.template_index = {t[0]: i for i, t in enumerate(self.templates)}

    # Profiles ---------------------------------------------------------------------------------

    def _build_profiles(self) -> None:
        opts = self.options
        rng = np.random.default_rng([opts.seed, 1])
        count = opts.profiles
        old = int(count * 0.6)
        created = np.concatenate(
            [
                rng.integers(self.start_ts - 730 * DAY, self.start_ts, old),
                rng.integers(self.start_ts, self.end_ts, count - old),
            ]
        ).astype(np.int64)
        created.sort()
        self.profile_created = created
        touched = rng.random(count) < 0.4
        later = (rng.random(count) * (self.end_ts - created)).astype(np.int64)
        self.profile_updated = np.where(touched, created + later, created)
        prefix = short_id(opts.seed, "profile-prefix", 0, 12).upper()
        self.profile_prefix = "01" + prefix

    def profile_id(self, index: int) -> str:
        """Return the id of the profile at `index` (ids sort in creation order)."""
        return f"{self.profile_prefix}{index:012X}"

    def profile_index(self, profile_id: str) -> int | None:
        """Return the index of a profile id, or None when it is not one of this store's."""
        if len(profile_id) != 26 or not profile_id.startswith(self.profile_prefix):
            return None
        try:
            index = int(profile_id[14:], 16)
        except ValueError:
            return None
        return index if index < self.options.profiles else None

    def _membership(self, kind: str, rate: float, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.options.seed, 2, index, 0 if kind == "list" else 1])
        mask: np.ndarray = rng.random(self.options.profiles) < rate
        return mask

    # Campaigns --------------------------------------------------------------------------------

    def _build_campaigns(self) -> None:
        opts = self.options
        rng = np.random.default_rng([opts.seed, 3])
        span = self.end_ts - self.start_ts
        campaigns = []
        for k in range(opts.campaigns):
            channel = "sms" if k % 4 == 3 else "email"
            send_ts = self.start_ts + int((k + 0.5) * span / opts.campaigns)
            # Campaigns go out at the top of a minute in the afternoon (UTC).
            send_ts = send_ts - send_ts % DAY + 14 * 3600 + int(rng.integers(0, 120)) * 60
            send_ts = min(send_ts, self.end_ts - 3600)
            if channel == "sms":
                list_index = SMS_LIST
            else:
                list_index = 1 if k % 5 == 0 else (3 if k % 7 == 0 else 0)
            theme = _THEMES[k % len(_THEMES)]
            campaigns.append(
                Campaign(
                    index=k,
                    id=short_id(opts.seed, "campaign", k, 26).upper(),
                    message_id=short_id(opts.seed, "campaign-message", k, 26).upper(),
                    template_id=short_id(opts.seed, "ctemplate", k) if channel == "email" else None,
                    name=f"{theme} #{k + 1} ({channel.upper()})",
                    channel=channel,
                    list_index=list_index,
                    send_ts=send_ts,
                    open_rate=float(rng.uniform(0.22, 0.40)),
                    click_rate=float(rng.uniform(0.015, 0.04)),
                    subject=f"{theme}: picked for you",
                )
            )
        self.campaigns = tuple(campaigns)
        self.campaign_by_id = {c.id: c for c in self.campaigns}
        self.campaigns_by_day: dict[int, list[Campaign]] = {}
        for c in self.campaigns:
            self.campaigns_by_day.setdefault(c.send_ts // DAY, []).append(c)

    # Flows ------------------------------------------------------------------------------------

    def _build_flows(self) -> None:
        opts = self.options
        flows: list[Flow] = []
        messages: list[FlowMessage] = []
        action_counter = 0
        for f in range(opts.flows):
            flow_type = FLOW_TYPES[f % len(FLOW_TYPES)]
            copy = f // len(FLOW_TYPES)
            name = _FLOW_NAMES[flow_type] + (f" {copy + 1}" if copy else "")
            actions = []
            for channel, delay in _FLOW_STEPS[flow_type]:
                action_id = str(10_000 + int(opts.seed % 1000) * 1000 + action_counter)
                action_counter += 1
                message_index = None
                if channel != "delay":
                    message_index = len(messages)
                    step = sum(1 for m in messages if m.flow_index == f) + 1
                    messages.append(
                        FlowMessage(
                            index=message_index,
                            id=short_id(opts.seed, "flow-message", message_index),
                            action_id=action_id,
                            flow_index=f,
                            channel=channel,
                            name=f"{name} {channel.upper()} {step}",
                            template_id=short_id(opts.seed, "ftemplate", message_index)
                            if channel == "email"
                            else None,
                        )
                    )
                actions.append(FlowAction(action_id, f, channel, delay, message_index))
            flows.append(
                Flow(
                    index=f,
                    id=short_id(opts.seed, "flow", f),
                    name=name,
                    flow_type=flow_type,
                    trigger_type=_FLOW_TRIGGERS[flow_type],
                    created=self.start_ts - (200 - f) * DAY,
                    actions=tuple(actions),
                )
            )
        self.flows = tuple(flows)
        self.flow_messages = tuple(messages)
        self.flow_by_id = {fl.id: fl for fl in self.flows}
        self.action_by_id = {a.id: a for fl in self.flows for a in fl.actions}
        self.flows_by_type: dict[str, list[Flow]] = {}
        for fl in self.flows:
            self.flows_by_type.setdefault(fl.flow_type, []).append(fl)
