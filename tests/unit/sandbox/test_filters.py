"""The filter parser: Klaviyo's syntax, checked against the fields the spec gives an operation."""

from __future__ import annotations

import pytest

from klaviyo_analytics.sandbox.apierror import ApiError
from klaviyo_analytics.sandbox.filters import Condition, parse_filter
from klaviyo_analytics.sandbox.operations import operation

EVENTS = operation("get_events").filters


def test_a_comma_separated_list_of_expressions_is_their_conjunction() -> None:
    joined = parse_filter(
        "greater-or-equal(datetime,2024-04-01T00:00:00+0000),"
        "less-or-equal(datetime,2024-04-07T23:59:59+0000)",
        EVENTS,
        "event",
    )
    nested = parse_filter(
        "and(greater-or-equal(datetime,2024-04-01T00:00:00+0000),"
        "less-or-equal(datetime,2024-04-07T23:59:59+0000))",
        EVENTS,
        "event",
    )
    assert (
        joined
        == nested
        == [
            Condition("datetime", "greater-or-equal", 1711929600),
            Condition("datetime", "less-or-equal", 1712534399),
        ]
    )


def test_the_fields_and_operators_come_from_the_spec() -> None:
    actions = operation("get_actions_for_flow").filters
    assert set(actions) == {"id", "action_type", "status", "created", "updated"}
    assert parse_filter("equals(action_type,'TIME_DELAY')", actions, "flow-action") == [
        Condition("action_type", "equals", "TIME_DELAY")
    ]
    lists = operation("get_lists").filters
    assert parse_filter("equals(name,['A','B'])", lists, "list") == [
        Condition("name", "equals", ["A", "B"])
    ]


@pytest.mark.parametrize(
    ("op_id", "text"),
    [
        ("get_events", "equals(uuid,'x')"),  # not a filter field of events
        ("get_profiles", "greater-or-equal(created,2024-01-01T00:00:00Z)"),  # not its operator
        ("get_lists", "equals(name,'A')"),  # lists take name only as a list
        ("get_campaigns", "any(status,'Sent')"),  # any needs a list
        ("get_events", "greater-or-equal(datetime,2024-01-01T00:00:00Z),"),  # dangling comma
    ],
)
def test_what_the_spec_does_not_allow_is_refused(op_id: str, text: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_filter(text, operation(op_id).filters, "x")
    assert caught.value.status == 400 and caught.value.parameter == "filter"
