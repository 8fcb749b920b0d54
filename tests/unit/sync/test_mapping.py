"""Mapping Klaviyo records to rows: the parts that depend on the API's shapes."""

from __future__ import annotations

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.klaviyo.paging import build_page
from klaviyo_analytics.sync import mapping


def test_flow_action_type_and_status_come_from_the_definition_in_revision_2026_07_15() -> None:
    body = {
        "data": [
            {
                "type": "flow-action",
                "id": "17011",
                "attributes": {
                    "definition": {"id": "17011", "type": "send-email", "data": {"status": "live"}}
                },
                "relationships": {"flow": {"data": {"type": "flow", "id": "F1"}}},
            }
        ],
        "links": {"self": "http://127.0.0.1/api/flows/F1/flow-actions"},
    }
    page = build_page(
        k.FlowAction, body, url="http://127.0.0.1/api/flows/F1/flow-actions", context={}
    )
    row = mapping.flow_action(page.records[0], "F1")
    assert (row.action_type, row.status, row.flow_id) == ("SEND_EMAIL", "live", "F1")


def test_message_events_are_credited_to_their_campaign_through_the_message_id() -> None:
    body = {
        "data": [
            {
                "type": "event",
                "id": "e1",
                "attributes": {
                    "datetime": "2026-03-01T10:00:00+00:00",
                    "timestamp": 1772359200,
                    "event_properties": {"$message": "M1", "Campaign Name": "Spring"},
                },
                "relationships": {"metric": {"data": {"type": "metric", "id": "opened"}}},
            }
        ],
        "links": {"self": "http://127.0.0.1/api/events"},
    }
    page = build_page(k.Event, body, url="http://127.0.0.1/api/events", context={})
    row = mapping.event(page.records[0], {"M1": "C1"})
    assert (row.attributed_source_type, row.attributed_source_id, row.attributed_message_id) == (
        "campaign",
        "C1",
        "M1",
    )
    assert row.profile_id is None and row.value is None
