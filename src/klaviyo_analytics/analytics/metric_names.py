"""Find the metrics analytics needs by name (never by id), once per query or refresh."""

from __future__ import annotations

from dataclasses import dataclass

from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.metrics import MetricRepository

RECEIVED_EMAIL = "Received Email"
OPENED_EMAIL = "Opened Email"
CLICKED_EMAIL = "Clicked Email"
BOUNCED_EMAIL = "Bounced Email"
MARKED_SPAM = "Marked Email as Spam"
UNSUBSCRIBED = "Unsubscribed"
RECEIVED_SMS = "Received SMS"
CLICKED_SMS = "Clicked SMS"
PLACED_ORDER = "Placed Order"
REFUNDED_ORDER = "Refunded Order"
VIEWED_FORM = "Viewed Form"
SUBMITTED_FORM = "Submitted Form"
VIEWED_PRODUCT = "Viewed Product"
STARTED_CHECKOUT = "Started Checkout"
# Klaviyo's names for a new subscription, newest first; used when the account has them.
SUBSCRIBED = (
    "Subscribed to Email Marketing",
    "Subscribed to List",
    "Subscribed to SMS Marketing",
)


@dataclass(frozen=True)
class MetricIds:
    """The ids of each metric analytics reads (every integration's metric of that name)."""

    received_email: list[str]
    opened_email: list[str]
    clicked_email: list[str]
    bounced_email: list[str]
    marked_spam: list[str]
    unsubscribed: list[str]
    received_sms: list[str]
    clicked_sms: list[str]
    placed_order: list[str]
    refunded_order: list[str]
    viewed_form: list[str]
    submitted_form: list[str]
    subscribed: list[str]
    viewed_product: list[str]
    started_checkout: list[str]

    @property
    def engagement(self) -> list[str]:
        """Return every message-engagement metric's ids."""
        return (
            self.received_email
            + self.opened_email
            + self.clicked_email
            + self.bounced_email
            + self.marked_spam
            + self.unsubscribed
            + self.received_sms
            + self.clicked_sms
        )

    @property
    def sms(self) -> list[str]:
        """Return the ids of metrics only SMS messages have."""
        return self.received_sms + self.clicked_sms


async def metric_ids(conn: Conn) -> MetricIds:
    """Return the ids of the metrics analytics reads; a metric the account lacks has no ids."""
    by_name = await MetricRepository().ids_by_name(conn)

    def ids(*names: str) -> list[str]:
        return [i for n in names for i in by_name.get(n, [])]

    return MetricIds(
        received_email=ids(RECEIVED_EMAIL),
        opened_email=ids(OPENED_EMAIL),
        clicked_email=ids(CLICKED_EMAIL),
        bounced_email=ids(BOUNCED_EMAIL),
        marked_spam=ids(MARKED_SPAM),
        unsubscribed=ids(UNSUBSCRIBED),
        received_sms=ids(RECEIVED_SMS),
        clicked_sms=ids(CLICKED_SMS),
        placed_order=ids(PLACED_ORDER),
        refunded_order=ids(REFUNDED_ORDER),
        viewed_form=ids(VIEWED_FORM),
        submitted_form=ids(SUBMITTED_FORM),
        subscribed=ids(*SUBSCRIBED),
        viewed_product=ids(VIEWED_PRODUCT),
        started_checkout=ids(STARTED_CHECKOUT),
    )
