"""Response models built from the analytics dataclasses keep every field of them."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

from klaviyo_analytics.analytics.customers import RfmGroup, RfmSummary
from klaviyo_analytics.api.routes.customers import RfmResponse


def test_the_rfm_response_has_every_field_of_the_rfm_summary_and_where_it_came_from() -> None:
    names = {f.name for f in dataclasses.fields(RfmSummary)}
    assert set(RfmResponse.model_fields) == names | {"source", "timezone"}
    summary = RfmSummary(
        as_of=date(2026, 3, 1), compared_to=date(2026, 1, 30), customers=3,
        groups=[RfmGroup("Champions", 3, 7, Decimal("120"))], moved=1, new_customers=2, movement=[],
    )  # fmt: skip
    body = RfmResponse(
        source="database", timezone="UTC",
        **{f.name: getattr(summary, f.name) for f in dataclasses.fields(RfmSummary)},
    ).model_dump(mode="json")  # fmt: skip
    assert body["as_of"] == "2026-03-01" and body["groups"][0]["group"] == "Champions"
    assert set(body) == names | {"source", "timezone"}
