"""Records: validated one by one, included objects joined, bad records quarantined not fatal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from klaviyo_analytics.klaviyo import Event, Page, Profile
from tests.unit.klaviyo.helpers import BASE, Recorder, event, jsonapi, make_client, page_body

METRIC = {
    "type": "metric",
    "id": "M1",
    "attributes": {"name": "Placed Order", "integration": {"name": "Shopify"}},
    "links": {"self": f"{BASE}/api/metrics/M1"},
}
PROFILE = {
    "type": "profile",
    "id": "P1",
    "attributes": {"email": "ada@example.com", "updated": "2024-02-01T00:00:00+00:00"},
    "links": {"self": f"{BASE}/api/profiles/P1"},
}
ATTRIBUTION = {
    "type": "attribution",
    "id": "AT1",
    "relationships": {
        "flow": {"data": {"type": "flow", "id": "F1"}},
        "flow-message": {"data": {"type": "flow-message", "id": "FM1"}},
        "flow-message-variation": {"data": {"type": "flow-message", "id": "FM1v"}},
        "attributed-event": {"data": {"type": "event", "id": "eClick"}},
        "event": {"data": {"type": "event", "id": "e1"}},
    },
    "links": {"self": f"{BASE}/api/attributions/AT1"},
}


async def events_page(data: list[Any], included: list[Any] | None = None) -> Page[Event]:
    recorder = Recorder(jsonapi(page_body(data, included=included)))
    async with make_client(recorder) as client:
        pages = [p async for p in client.iter_events()]
    assert len(pages) == 1
    return pages[0]


async def test_event_gets_its_included_metric_profile_and_attributions_joined() -> None:
    page = await events_page(
        [event("e1", attributions=["AT1"])], included=[METRIC, PROFILE, ATTRIBUTION]
    )
    (record,) = page.records
    assert record.metric is not None and record.metric.name == "Placed Order"
    assert record.profile is not None and record.profile.email == "ada@example.com"
    (attribution,) = record.attributions
    assert attribution.flow_id == "F1"
    assert attribution.flow_message_id == "FM1"
    assert attribution.flow_message_variation_id == "FM1v"
    assert attribution.attributed_event_id == "eClick"
    assert attribution.campaign_id is None
    assert record.datetime == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert record.metric_id == "M1" and record.profile_id == "P1"
    assert page.invalid == []


async def test_attributions_without_include_keep_their_ids() -> None:
    page = await events_page([event("e1", attributions=["AT1", "AT2"])])
    (record,) = page.records
    assert [a.id for a in record.attributions] == ["AT1", "AT2"]
    assert record.metric is None and record.profile is None


async def test_event_without_a_profile_is_valid() -> None:
    page = await events_page([event("e1", profile_id=None)])
    (record,) = page.records
    assert record.profile_id is None and record.profile is None


async def test_invalid_records_land_in_invalid_with_a_reason_while_valid_ones_pass() -> None:
    no_datetime = event("bad1")
    del no_datetime["attributes"]["datetime"]
    naive = event("bad2", when="2024-03-01T12:00:00")
    page = await events_page(
        [event("ok1"), no_datetime, naive, event("bad3", metric_id=None), event("ok2"), "junk"]
    )
    assert [r.id for r in page.records] == ["ok1", "ok2"]
    reasons = {i.resource_id: i.reason for i in page.invalid}
    assert "datetime" in reasons["bad1"]
    assert "timezone" in reasons["bad2"]
    assert "metric_id" in reasons["bad3"]
    assert reasons[None] == "record is not an object"
    assert next(i for i in page.invalid if i.resource_id == "bad1").raw == no_datetime


async def test_a_record_of_the_wrong_type_is_quarantined() -> None:
    wrong = {**event("x1"), "type": "profile"}
    page = await events_page([wrong, event("ok")])
    assert [r.id for r in page.records] == ["ok"]
    assert "expected a 'event' resource" in page.invalid[0].reason


async def test_an_invalid_included_object_is_reported_and_its_event_kept() -> None:
    bad_profile = {**PROFILE, "attributes": {"updated": "not a date"}}
    page = await events_page([event("e1"), event("e2")], included=[METRIC, bad_profile])
    assert [r.id for r in page.records] == ["e1", "e2"]
    assert all(r.profile is None and r.profile_id == "P1" for r in page.records)
    assert len(page.invalid) == 1
    assert page.invalid[0].resource_type == "profile"
    assert page.invalid[0].reason.startswith("included profile P1: updated")


async def test_unknown_fields_are_tolerated() -> None:
    extra = event("e1")
    extra["attributes"]["brand_new_field"] = {"x": 1}
    extra["relationships"]["new-thing"] = {"data": None}
    page = await events_page([extra])
    assert [r.id for r in page.records] == ["e1"]


@pytest.mark.parametrize(
    ("properties", "value"),
    [
        ({"$value": 19.99}, Decimal("19.99")),
        ({"$value": -5}, Decimal("-5")),
        ({"$value": "12.30"}, Decimal("12.30")),
        ({}, None),
        ({"$value": None}, None),
        ({"$value": "n/a"}, None),
    ],
)
async def test_event_value_is_an_exact_decimal_or_none(
    properties: dict[str, Any], value: Decimal | None
) -> None:
    page = await events_page([event("e1", properties=properties)])
    assert page.records[0].value == value


async def test_null_event_properties_become_an_empty_dict() -> None:
    e = event("e1")
    e["attributes"]["event_properties"] = None
    page = await events_page([e])
    assert page.records[0].event_properties == {}


async def test_campaigns_carry_their_channel_and_joined_messages() -> None:
    campaign = {
        "type": "campaign",
        "id": "C1",
        "attributes": {
            "name": "Spring sale",
            "status": "Sent",
            "archived": False,
            "send_time": "2024-03-01T10:00:00+00:00",
        },
        "relationships": {
            "campaign-messages": {"data": [{"type": "campaign-message", "id": "CM1"}]}
        },
    }
    message = {
        "type": "campaign-message",
        "id": "CM1",
        "attributes": {"definition": {"channel": "email", "label": "Spring sale A"}},
    }
    recorder = Recorder(jsonapi(page_body([campaign], included=[message])))
    async with make_client(recorder) as client:
        pages = [p async for p in client.iter_campaigns("email")]
    (record,) = pages[0].records
    assert record.channel == "email" and record.message_ids == ["CM1"]
    (joined,) = record.messages
    assert joined.campaign_id == "C1" and joined.channel == "email"
    assert joined.label == "Spring sale A"


async def test_flow_actions_and_messages_know_their_parents() -> None:
    action = {
        "type": "flow-action",
        "id": "A1",
        "attributes": {"definition": {"type": "send-email"}},
    }
    message = {
        "type": "flow-message",
        "id": "FM1",
        "attributes": {"channel": "email", "definition": {"name": "Welcome 1", "template_id": "T"}},
    }
    recorder = Recorder(jsonapi(page_body([action])), jsonapi(page_body([message])))
    async with make_client(recorder) as client:
        actions = [p async for p in client.iter_flow_actions("F1")]
        messages = [p async for p in client.iter_flow_messages("A1")]
    assert actions[0].records[0].flow_id == "F1"
    assert actions[0].records[0].action_type == "send-email"
    fm = messages[0].records[0]
    assert (fm.flow_action_id, fm.name, fm.template_id) == ("A1", "Welcome 1", "T")


async def test_get_account_reads_timezone_currency_and_organization() -> None:
    account = {
        "type": "account",
        "id": "AC1",
        "attributes": {
            "test_account": False,
            "contact_information": {"organization_name": "Acme Goods"},
            "timezone": "America/New_York",
            "preferred_currency": "USD",
            "public_api_key": "AbC123",
            "locale": "en-US",
        },
    }
    recorder = Recorder(jsonapi({"data": [account], "links": {"self": f"{BASE}/api/accounts"}}))
    async with make_client(recorder) as client:
        result = await client.get_account()
    assert (result.timezone, result.preferred_currency, result.organization_name) == (
        "America/New_York",
        "USD",
        "Acme Goods",
    )
    assert recorder.requests[0].url.path == "/api/accounts"


async def test_get_segment_asks_for_the_profile_count() -> None:
    segment = {
        "type": "segment",
        "id": "S1",
        "attributes": {"name": "VIP", "is_active": True, "profile_count": 42},
    }
    recorder = Recorder(jsonapi({"data": segment}))
    async with make_client(recorder) as client:
        result = await client.get_segment("S1")
    assert result.profile_count == 42
    assert recorder.requests[0].url.params["additional-fields[segment]"] == "profile_count"


def test_predictive_analytics_are_exact_absent_values_none_and_a_bad_churn_refused() -> None:
    base: dict[str, Any] = {"type": "profile", "id": "p1", "attributes": {"email": "a@example.com"}}
    assert Profile.from_resource(base).predictive_analytics is None
    given = {
        "historic_clv": 93.87, "predicted_clv": 27.24, "total_clv": 121.11,
        "historic_number_of_orders": 2, "predicted_number_of_orders": 0.54,
        "average_days_between_orders": None, "average_order_value": 46.94,
        "churn_probability": 0.89, "expected_date_of_next_order": "2022-11-08T00:00:00+00:00",
        "ranked_channel_affinity": ["email"],
    }  # fmt: skip
    attrs: dict[str, Any] = {"email": "a@example.com", "predictive_analytics": given}
    pa = Profile.from_resource({**base, "attributes": attrs}).predictive_analytics
    assert pa is not None
    assert pa.predicted_clv == Decimal("27.24") and pa.total_clv == Decimal("121.11")
    assert pa.average_days_between_orders is None  # not 0
    assert pa.expected_date_of_next_order is not None
    assert pa.expected_date_of_next_order.isoformat() == "2022-11-08T00:00:00+00:00"
    bad = {**attrs, "predictive_analytics": {**given, "churn_probability": 1.5}}
    with pytest.raises(ValueError, match="churn_probability"):
        Profile.from_resource({**base, "attributes": bad})
