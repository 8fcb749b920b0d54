"""Answers from the Klaviyo API for data the database does not hold yet.

When a request finds nothing synced for it and a Klaviyo key is configured, the route answers
from Klaviyo (source "klaviyo") and starts a background sync of everything, so the next
request is served from the database.
"""

from __future__ import annotations

import logging

from klaviyo_analytics.api.deps import AppState
from klaviyo_analytics.api.errors import ConflictError
from klaviyo_analytics.api.syncs import ALL
from klaviyo_analytics.klaviyo import KlaviyoClient, Metric

logger = logging.getLogger(__name__)


def sync_soon(state: AppState) -> bool:
    """Start a background sync of all streams unless one is running; say whether it started."""
    if state.syncs is None or state.syncs.busy(ALL):
        return False
    try:
        state.syncs.start_in_background(ALL)
    except ConflictError:
        return False
    logger.info("the database lacks requested data: started a background sync of all streams")
    return True


async def klaviyo_metrics(client: KlaviyoClient) -> list[Metric]:
    """Return every metric of the account from the API."""
    found: list[Metric] = []
    async for page in client.iter_metrics():
        found.extend(page.records)
    return found
