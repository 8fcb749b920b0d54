"""Pydantic models of Klaviyo's JSON:API resources, flattened for the sync.

Each model is built from one JSON:API resource object (`type`, `id`, `attributes`,
`relationships`) by `from_resource`: attributes become fields, to-one relationships become
`<name>_id` fields, and resources from the document's `included` array are joined in when the
request asked for them. Models ignore fields they do not know (Klaviyo adds fields) but require
what the sync needs. A resource that does not validate raises `ValueError` (pydantic's
`ValidationError` is one), which the page builder turns into an `InvalidRecord`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from klaviyo_analytics.klaviyo.paging import Included, relationship_id, relationship_ids

_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


def checked_id(value: str, what: str) -> str:
    """Return `value` if it looks like a Klaviyo id (it goes into URLs and filters).

    Raises ValueError otherwise, so nothing can be injected into a filter expression or path.
    """
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a Klaviyo id")
    return value


def _related_id(relationship: Any) -> str | None:
    """Return the id of a to-one relationship object (`{"data": {"id": ...}}`), or None; as
    `relationship_id` does, from the relationship itself."""
    if not isinstance(relationship, dict):
        return None
    data = relationship.get("data")
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


class Resource(BaseModel):
    """A Klaviyo resource: an `id` plus its attributes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    resource_type: ClassVar[str]
    # relationship name -> field that receives the related id (to-one relationships)
    to_one: ClassVar[Mapping[str, str]] = {}

    id: str = Field(min_length=1)

    @classmethod
    def _own_fields(cls, resource: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        """Return the resource's attributes, the context values and its id.

        Raises ValueError if the resource is not a JSON:API object of this model's type.
        """
        kind = resource.get("type")
        if kind != cls.resource_type:
            raise ValueError(f"expected a {cls.resource_type!r} resource, got type {kind!r}")
        attributes = resource.get("attributes", {})
        if not isinstance(attributes, dict):
            raise ValueError("attributes is not an object")
        return {**attributes, **context, "id": resource.get("id")}

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Return the dict to validate: attributes, relationship ids, context values.

        Raises ValueError if the resource is not a JSON:API object of this model's type.
        """
        flat = cls._own_fields(resource, context)
        for relationship, field in cls.to_one.items():
            flat.setdefault(field, relationship_id(resource, relationship))
        return flat

    @classmethod
    def from_resource(
        cls,
        resource: Mapping[str, Any],
        included: Included | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Self:
        """Validate one JSON:API resource object into this model.

        Raises ValueError (pydantic.ValidationError) if it does not fit.
        """
        flat = cls.flatten(resource, included or Included(()), context or {})
        return cls.model_validate(flat)


class Account(Resource):
    """The Klaviyo account: its timezone decides what a 'day' is."""

    resource_type = "account"

    timezone: str = Field(min_length=1)
    preferred_currency: str = Field(min_length=1)
    organization_name: str | None = None
    locale: str | None = None
    industry: str | None = None
    test_account: bool | None = None

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = super().flatten(resource, included, context)
        contact = flat.get("contact_information")
        if isinstance(contact, Mapping):
            flat.setdefault("organization_name", contact.get("organization_name"))
        return flat


class Metric(Resource):
    """A metric (event type), such as 'Placed Order'."""

    resource_type = "metric"

    name: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    integration: dict[str, Any] | None = None


class PredictiveAnalytics(BaseModel):
    """Klaviyo's own CLV predictions for a profile (`additional-fields[profile]=
    predictive_analytics`); every value may be null (Klaviyo has none for the profile).

    Numbers are kept exact as the API wrote them (JSON numbers to Decimal through their text).
    Raises ValueError (pydantic.ValidationError) for a value that is not a finite number or
    date-time, or a churn probability outside 0..1 (the whole profile is then quarantined).
    Negative money is legal (refunds).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    historic_clv: Decimal | None = None
    predicted_clv: Decimal | None = None
    total_clv: Decimal | None = None
    historic_number_of_orders: Decimal | None = None
    predicted_number_of_orders: Decimal | None = None
    average_days_between_orders: Decimal | None = None
    average_order_value: Decimal | None = None
    churn_probability: Decimal | None = Field(default=None, ge=0, le=1)
    expected_date_of_next_order: AwareDatetime | None = None


class Profile(Resource):
    """A person; Klaviyo may know only an email, only a phone number, or neither.

    `predictive_analytics` is None when the request did not ask for it (or Klaviyo sent none).
    """

    resource_type = "profile"

    email: str | None = None
    phone_number: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    organization: str | None = None
    locale: str | None = None
    title: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    last_event_date: datetime | None = None
    location: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    predictive_analytics: PredictiveAnalytics | None = None


class Attribution(Resource):
    """What an event (e.g. Placed Order) is attributed to.

    Klaviyo's `attribution` resource has no attributes, only relationships: the campaign and
    campaign message, or the flow, flow message and flow message variation, and the
    `attributed_event_id` (the event that earned the credit, e.g. the Clicked Email). Without
    `include=attributions` only `id` is known.
    """

    resource_type = "attribution"
    to_one = {
        "campaign": "campaign_id",
        "campaign-message": "campaign_message_id",
        "flow": "flow_id",
        "flow-message": "flow_message_id",
        "flow-message-variation": "flow_message_variation_id",
        "attributed-event": "attributed_event_id",
        "event": "event_id",
    }

    campaign_id: str | None = None
    campaign_message_id: str | None = None
    flow_id: str | None = None
    flow_message_id: str | None = None
    flow_message_variation_id: str | None = None
    attributed_event_id: str | None = None
    event_id: str | None = None


class Event(Resource):
    """One event; `datetime` is when it happened, `profile_id` may be absent."""

    resource_type = "event"
    to_one = {"metric": "metric_id", "profile": "profile_id"}

    datetime: AwareDatetime
    timestamp: int | None = None
    uuid: str | None = None
    metric_id: str = Field(min_length=1)
    profile_id: str | None = None
    event_properties: dict[str, Any] = Field(default_factory=dict)
    attributions: list[Attribution] = Field(default_factory=list)
    metric: Metric | None = None
    profile: Profile | None = None

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        # Resource.flatten inlined, reading `relationships` once: this runs for every event of
        # a backfill, and the generic path looked the relationships up three times.
        flat = cls._own_fields(resource, context)
        relationships = resource.get("relationships")
        if not isinstance(relationships, dict):
            relationships = {}
        if "metric_id" not in flat:
            flat["metric_id"] = _related_id(relationships.get("metric"))
        if "profile_id" not in flat:
            flat["profile_id"] = _related_id(relationships.get("profile"))
        if flat.get("event_properties") is None:
            flat["event_properties"] = {}
        flat["metric"] = included.resolve(Metric, flat["metric_id"])
        flat["profile"] = included.resolve(Profile, flat["profile_id"])
        attributions: list[Attribution] = []
        related = relationships.get("attributions")
        data = related.get("data") if isinstance(related, dict) else None
        if isinstance(data, list):
            for item in data:
                if isinstance(item, dict) and "id" in item:
                    attribution_id = str(item["id"])
                    joined = included.resolve(Attribution, attribution_id)
                    attributions.append(joined or Attribution(id=attribution_id))
        flat["attributions"] = attributions
        return flat

    @property
    def value(self) -> Decimal | None:
        """Return `$value` as an exact Decimal (negative for refunds), or None if absent."""
        raw = self.event_properties.get("$value")
        if raw is None or isinstance(raw, bool):
            return None
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            return None
        return value if value.is_finite() else None


class CampaignMessage(Resource):
    """One message of a campaign (per channel; A/B variants are separate messages)."""

    resource_type = "campaign-message"
    to_one = {"campaign": "campaign_id", "template": "template_id"}

    campaign_id: str | None = None
    template_id: str | None = None
    channel: str | None = None
    label: str | None = None
    definition: dict[str, Any] | None = None
    send_times: list[dict[str, Any]] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = super().flatten(resource, included, context)
        definition = flat.get("definition")
        if isinstance(definition, Mapping):
            flat.setdefault("channel", definition.get("channel"))
            flat.setdefault("label", definition.get("label"))
        return flat


class Campaign(Resource):
    """A campaign; `channel` is the channel it was listed under (email or sms)."""

    resource_type = "campaign"

    name: str
    status: str
    channel: str
    archived: bool | None = None
    audiences: dict[str, Any] | None = None
    send_options: dict[str, Any] | None = None
    send_strategy: dict[str, Any] | None = None
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    updated_at: datetime | None = None
    send_time: datetime | None = None
    message_ids: list[str] = Field(default_factory=list)
    messages: list[CampaignMessage] = Field(default_factory=list)

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = super().flatten(resource, included, context)
        ids = relationship_ids(resource, "campaign-messages")
        flat["message_ids"] = ids
        messages = [included.resolve(CampaignMessage, i, {"campaign_id": flat["id"]}) for i in ids]
        flat["messages"] = [m for m in messages if m is not None]
        return flat


class Flow(Resource):
    """An automated flow (welcome series, abandoned cart...)."""

    resource_type = "flow"

    name: str | None = None
    status: str | None = None
    archived: bool | None = None
    trigger_type: str | None = None
    created: datetime | None = None
    updated: datetime | None = None


class FlowAction(Resource):
    """One step of a flow; `action_type` and `status` come from the definition when Klaviyo
    omits them (revision 2026-07-15 keeps them only there)."""

    resource_type = "flow-action"
    to_one = {"flow": "flow_id"}

    flow_id: str | None = None
    action_type: str | None = None
    status: str | None = None
    definition: dict[str, Any] | None = None
    created: datetime | None = None
    updated: datetime | None = None

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = super().flatten(resource, included, context)
        definition = flat.get("definition")
        if isinstance(definition, Mapping):
            if flat.get("action_type") is None:
                flat["action_type"] = definition.get("type")
            data = definition.get("data")
            if flat.get("status") is None and isinstance(data, Mapping):
                flat["status"] = data.get("status")
        return flat


class FlowMessage(Resource):
    """A message sent by a flow action."""

    resource_type = "flow-message"
    to_one = {"flow-action": "flow_action_id", "template": "template_id"}

    flow_action_id: str | None = None
    template_id: str | None = None
    name: str | None = None
    channel: str | None = None
    definition: dict[str, Any] | None = None
    created: datetime | None = None
    updated: datetime | None = None

    @classmethod
    def flatten(
        cls, resource: Mapping[str, Any], included: Included, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        flat = super().flatten(resource, included, context)
        definition = flat.get("definition")
        if isinstance(definition, Mapping):
            flat.setdefault("name", definition.get("name"))
            if flat.get("template_id") is None:
                flat["template_id"] = definition.get("template_id")
        return flat


class KlaviyoList(Resource):
    """A static list of profiles."""

    resource_type = "list"

    name: str | None = None
    opt_in_process: str | None = None
    created: datetime | None = None
    updated: datetime | None = None


class Segment(Resource):
    """A dynamic segment; `profile_count` only from `get_segment` (additional-fields)."""

    resource_type = "segment"

    name: str | None = None
    is_active: bool | None = None
    is_processing: bool | None = None
    is_starred: bool | None = None
    definition: dict[str, Any] | None = None
    profile_count: int | None = None
    created: datetime | None = None
    updated: datetime | None = None


class Form(Resource):
    """A signup form."""

    resource_type = "form"

    name: str | None = None
    status: str | None = None
    ab_test: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Template(Resource):
    """An email template."""

    resource_type = "template"

    name: str | None = None
    editor_type: str | None = None
    html: str | None = None
    text: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
