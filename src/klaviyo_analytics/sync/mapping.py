"""Turn validated Klaviyo records into database records (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.repos.audiences import Form, KlaviyoList, Segment, Template
from klaviyo_analytics.db.repos.campaigns import Campaign, CampaignMessage
from klaviyo_analytics.db.repos.events import Event
from klaviyo_analytics.db.repos.flows import Flow, FlowAction, FlowMessage
from klaviyo_analytics.db.repos.metrics import Metric
from klaviyo_analytics.db.repos.profiles import Profile


def metric(m: k.Metric) -> Metric:
    """Map a Klaviyo metric."""
    integration = m.integration or {}
    return Metric(
        id=m.id,
        name=m.name or m.id,
        integration_id=_text(integration.get("id")),
        integration_name=_text(integration.get("name")),
        integration_category=_text(integration.get("category")),
        created=m.created,
        updated=m.updated,
    )


def profile(p: k.Profile) -> Profile:
    """Map a Klaviyo profile (never a stub: it is the real thing), with its predictive
    analytics; values Klaviyo did not give stay None (NULL), never 0."""
    pa = p.predictive_analytics or k.PredictiveAnalytics()
    return Profile(
        id=p.id,
        email=p.email,
        phone_number=p.phone_number,
        external_id=p.external_id,
        first_name=p.first_name,
        last_name=p.last_name,
        organization=p.organization,
        locale=p.locale,
        location=p.location,
        properties=p.properties or {},
        created=p.created,
        updated=p.updated,
        historic_clv=pa.historic_clv,
        predicted_clv=pa.predicted_clv,
        total_clv=pa.total_clv,
        historic_number_of_orders=pa.historic_number_of_orders,
        predicted_number_of_orders=pa.predicted_number_of_orders,
        average_days_between_orders=pa.average_days_between_orders,
        average_order_value=pa.average_order_value,
        churn_probability=pa.churn_probability,
        expected_date_of_next_order=pa.expected_date_of_next_order,
    )


def event(e: k.Event, campaign_of_message: Mapping[str, str]) -> Event:
    """Map a Klaviyo event, with the campaign or flow it came from or is attributed to.

    An order's source is Klaviyo's attribution (the `attributions` relationship, or the
    `$attribution` property). A message event's source (a Received or Opened Email, a Clicked
    SMS) is the message named by `$message` and `$flow`; a campaign message id is turned into
    its campaign through `campaign_of_message`.
    """
    source_type: str | None = None
    source_id: str | None = None
    message_id: str | None = None
    props = e.event_properties
    attribution = next((a for a in e.attributions if a.campaign_id or a.flow_id), None)
    legacy = _dict(props.get("$attribution")) or None
    if attribution is not None:
        if attribution.flow_id:
            source_type, source_id = "flow", attribution.flow_id
            message_id = attribution.flow_message_id
        else:
            source_type, source_id = "campaign", attribution.campaign_id
            message_id = attribution.campaign_message_id
    elif legacy is not None or "$message" in props:
        origin = legacy if legacy is not None else props
        message_id = _text(origin.get("$message"))
        flow_id = _text(origin.get("$flow"))
        if flow_id:
            source_type, source_id = "flow", flow_id
        elif message_id:
            source_type = "campaign"
            source_id = campaign_of_message.get(message_id, message_id)
    return Event(
        id=e.id,
        timestamp=e.datetime,
        metric_id=e.metric_id,
        profile_id=e.profile_id,
        value=e.value,
        uuid=e.uuid,
        properties=props,  # already a copy made by validation; not mutated
        attributed_source_type=source_type,
        attributed_source_id=source_id,
        attributed_message_id=message_id,
    )


def campaign(c: k.Campaign) -> Campaign:
    """Map a Klaviyo campaign."""
    return Campaign(
        id=c.id,
        name=c.name,
        channel=c.channel,
        status=c.status,
        archived=bool(c.archived),
        audiences=c.audiences,
        send_strategy=c.send_strategy,
        created_at=c.created_at,
        scheduled_at=c.scheduled_at,
        send_time=c.send_time,
        updated_at=c.updated_at,
    )


def campaign_message(m: k.CampaignMessage, campaign_id: str) -> CampaignMessage:
    """Map a campaign message; its content sits in `definition.content` for email."""
    definition = m.definition or {}
    content = _dict(definition.get("content"))
    return CampaignMessage(
        id=m.id,
        campaign_id=m.campaign_id or campaign_id,
        channel=m.channel or _text(definition.get("channel")),
        label=m.label or _text(definition.get("label")),
        subject=_text(content.get("subject")),
        preview_text=_text(content.get("preview_text")),
        from_email=_text(content.get("from_email")),
        from_label=_text(content.get("from_label")),
        content=definition or None,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def flow(f: k.Flow) -> Flow:
    """Map a Klaviyo flow."""
    return Flow(
        id=f.id,
        name=f.name or f.id,
        status=f.status,
        archived=bool(f.archived),
        trigger_type=f.trigger_type,
        created=f.created,
        updated=f.updated,
    )


def flow_action(a: k.FlowAction, flow_id: str) -> FlowAction:
    """Map a flow action; the type is stored in Klaviyo's older upper-case form
    (`send-email` -> `SEND_EMAIL`)."""
    return FlowAction(
        id=a.id,
        flow_id=a.flow_id or flow_id,
        action_type=a.action_type.upper().replace("-", "_") if a.action_type else None,
        status=a.status,
        settings=a.definition,
        created=a.created,
        updated=a.updated,
    )


def flow_message(m: k.FlowMessage, action: FlowAction) -> FlowMessage:
    """Map a flow message of `action`."""
    definition = m.definition or {}
    return FlowMessage(
        id=m.id,
        flow_action_id=m.flow_action_id or action.id,
        flow_id=action.flow_id,
        name=m.name,
        channel=m.channel or _text(definition.get("channel")),
        content=definition or None,
        created=m.created,
        updated=m.updated,
    )


def klaviyo_list(lst: k.KlaviyoList, profile_count: int | None = None) -> KlaviyoList:
    """Map a list."""
    return KlaviyoList(
        id=lst.id,
        name=lst.name or lst.id,
        opt_in_process=lst.opt_in_process,
        profile_count=profile_count,
        created=lst.created,
        updated=lst.updated,
    )


def segment(s: k.Segment) -> Segment:
    """Map a segment (with its profile count when the API gave one)."""
    return Segment(
        id=s.id,
        name=s.name or s.id,
        definition=s.definition,
        is_active=s.is_active,
        is_processing=s.is_processing,
        is_starred=s.is_starred,
        profile_count=s.profile_count,
        created=s.created,
        updated=s.updated,
    )


def form(f: k.Form) -> Form:
    """Map a signup form."""
    return Form(
        id=f.id,
        name=f.name or f.id,
        status=f.status,
        ab_test=f.ab_test,
        created_at=f.created_at,
        updated_at=f.updated_at,
    )


def template(t: k.Template) -> Template:
    """Map an email template."""
    return Template(id=t.id, name=t.name or t.id, editor_type=t.editor_type, html=t.html,
                    text=t.text, created=t.created, updated=t.updated)  # fmt: skip


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
