"""Render store entities and events as the spec's JSON:API resource objects."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.catalog import Campaign, Catalog, Flow, FlowAction, FlowMessage
from klaviyo_analytics.sandbox.customers import CATALOGUE, DISCOUNT_CODES, Line, basket
from klaviyo_analytics.sandbox.generator import KIND_CAMPAIGN, KIND_FLOW, EventColumns

Json = dict[str, Any]


@lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")


def iso(ts: int) -> str:
    """Format unix seconds the way Klaviyo does (`2024-01-01T12:00:00+00:00`)."""
    day, rest = divmod(ts, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{_day_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}+00:00"


def event_id(number: int) -> str:
    """Format an event's numeric id (fixed width, so ids sort like their numbers)."""
    return f"{number:012x}"


def order_items(lines: list[Line]) -> list[Json]:
    """Render an order's lines as Shopify's integration sends its `Items`."""
    items = []
    for line in lines:
        p = CATALOGUE[line.product]
        items.append({
            "ProductID": p.product_id, "SKU": p.sku, "ProductName": p.name,
            "Quantity": line.quantity, "ItemPrice": p.price_cents / 100,
            "RowTotal": line.row_cents / 100, "Categories": [p.category], "Brand": p.brand,
            "ProductURL": f"https://shop.example.com/products/{p.sku.lower()}",
        })  # fmt: skip
    return items


_METRIC_TRIGGERS = {"abandoned_cart": c.STARTED_CHECKOUT, "browse_abandonment": c.VIEWED_PRODUCT,
                    "post_purchase": c.PLACED_ORDER, "win_back": c.PLACED_ORDER}  # fmt: skip


def rel(base: str, kind: str, ident: str, name: str, data: Any = None) -> Json:
    """Return a relationship object with Klaviyo's `self` and `related` links (and its data)."""
    out: Json = {"links": {"self": f"{base}/api/{kind}s/{ident}/relationships/{name}/",
                           "related": f"{base}/api/{kind}s/{ident}/{name}/"}}  # fmt: skip
    if data is not None:
        out["data"] = data
    return out


class Renderer:
    """Turn catalogue entries and event columns into resource objects under one base URL."""

    def __init__(self, catalog: Catalog, staple: np.ndarray) -> None:
        """Precompute what every event of a metric shares; `staple` is each profile's staple
        product (the customer model's), which order baskets depend on."""
        self.cat = catalog
        self._staple = staple
        self._metric_rel = [{"data": {"type": "metric", "id": m.id}} for m in catalog.metrics]
        self._uuid_mix = (catalog.options.seed * 0x9E3779B97F4A7C15) & ((1 << 128) - 1)

    # Events -----------------------------------------------------------------------------------

    def events(self, ev: EventColumns, index: list[int], base: str) -> list[Json]:
        """Render the events at `index` of a column set (columns are read once, as lists)."""
        cols = ev.take(np.asarray(index, dtype=np.int64))
        ids, tss, metrics, profiles, attrs = (
            cols.id.tolist(), cols.ts.tolist(), cols.metric.tolist(), cols.profile.tolist(),
            cols.attr.tolist(),
        )  # fmt: skip
        out = []
        profile_id = self.cat.profile_id
        for k in range(len(ids)):
            number = ids[k]
            eid = f"{number:012x}"
            ts = tss[k]
            metric = metrics[k]
            profile = profiles[k]
            relationships: Json = {
                "metric": {
                    **self._metric_rel[metric],
                    "links": {
                        "self": f"{base}/api/events/{eid}/relationships/metric/",
                        "related": f"{base}/api/events/{eid}/metric/",
                    },
                }
            }
            if profile >= 0:
                relationships["profile"] = {
                    "data": {"type": "profile", "id": profile_id(profile)},
                    "links": {"self": f"{base}/api/events/{eid}/relationships/profile/",
                              "related": f"{base}/api/events/{eid}/profile/"}}  # fmt: skip
            attributed = metric == c.PLACED_ORDER and attrs[k] >= 0
            relationships["attributions"] = {
                "data": [{"type": "attribution", "id": eid + "-attribution"}] if attributed else []
            }
            u = f"{number ^ self._uuid_mix:032x}"
            out.append({
                "type": "event",
                "id": eid,
                "attributes": {
                    "timestamp": ts,
                    "event_properties": self.properties(cols, k, number),
                    "datetime": iso(ts),
                    "uuid": f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}",
                },
                "relationships": relationships,
                "links": {"self": f"{base}/api/events/{eid}/"},
            })  # fmt: skip
        return out

    def event(self, ev: EventColumns, i: int, base: str) -> Json:
        """Render the `i`-th event of a column set."""
        return self.events(ev, [i], base)[0]

    def properties(self, ev: EventColumns, i: int, number: int) -> Json:
        """Return an event's `event_properties` as Klaviyo's integrations send them."""
        metric = int(ev.metric[i])
        kind = int(ev.kind[i])
        source = int(ev.source[i])
        props: Json = {}
        if metric in (c.VIEWED_PRODUCT,):
            p = CATALOGUE[int(ev.aux[i])]
            props = {"ProductID": p.product_id, "SKU": p.sku, "ProductName": p.name,
                     "Price": p.price_cents / 100, "Categories": [p.category],
                     "Brand": p.brand}  # fmt: skip
        elif metric in (c.STARTED_CHECKOUT, c.PLACED_ORDER):
            # A checkout that became an order names it in `attr` and shares its basket.
            attr = int(ev.attr[i])
            key = attr if metric == c.STARTED_CHECKOUT and attr >= 0 else number
            profile = int(ev.profile[i])
            staple = int(self._staple[profile]) if profile >= 0 else -1
            lines, code, discount = basket(self.cat.options.seed, key, staple, int(ev.aux[i]))
            items = order_items(lines)
            props = {
                "$value": int(ev.value[i]) / 100,
                "$currency_code": self.cat.options.currency,
                "$event_id": str(number),
                "Items": items,
                "ItemNames": [item["ProductName"] for item in items],
                "Item Count": sum(line.quantity for line in lines),
                "Discount Codes": [DISCOUNT_CODES[code][0]] if code >= 0 else [],
                "Discount Value": discount / 100,
            }
            if metric == c.PLACED_ORDER:
                props["OrderId"] = str(number)
                if attr >= 0:
                    props["$attribution"] = self._attribution_props(ev, i)
        elif metric == c.ORDERED_PRODUCT:
            p = CATALOGUE[int(ev.aux[i])]
            row = int(ev.value[i])
            props = {
                "$value": row / 100, "OrderId": str(int(ev.attr[i])), "ProductID": p.product_id,
                "SKU": p.sku, "ProductName": p.name, "Quantity": row // p.price_cents,
                "ItemPrice": p.price_cents / 100, "RowTotal": row / 100,
                "Categories": [p.category], "ProductBrand": p.brand,
                "$currency_code": self.cat.options.currency,
            }  # fmt: skip
        elif metric == c.REFUNDED_ORDER:
            props = {
                "$value": int(ev.value[i]) / 100,
                "$currency_code": self.cat.options.currency,
                "$event_id": f"{int(ev.attr[i])}-refund",
                "OrderId": str(int(ev.attr[i])),
            }
        elif metric in (c.VIEWED_FORM, c.SUBMITTED_FORM):
            form = self.cat.forms[int(ev.aux[i])]
            props = {"form_id": form.id, "form_name": form.name, "form_type": "popup"}
        elif metric == c.SUBSCRIBED_TO_LIST:
            group = self.cat.lists[int(ev.aux[i])]
            props = {"List": group.name, "$list": group.id, "Method": "Klaviyo Form"}
        elif metric == c.SUBSCRIBED_TO_EMAIL:
            props = {"Method": "Klaviyo Form", "Channel": "email"}
        if kind == KIND_CAMPAIGN and metric != c.PLACED_ORDER:
            campaign = self.cat.campaigns[source]
            props.update(
                {"$message": campaign.message_id, "Campaign Name": campaign.name,
                 "Subject": campaign.subject, "$message_interaction": campaign.message_id}
            )  # fmt: skip
        elif kind == KIND_FLOW and metric != c.PLACED_ORDER:
            message = self.cat.flow_messages[source]
            props.update(
                {"$message": message.id, "$flow": self.cat.flows[message.flow_index].id,
                 "Campaign Name": message.name, "Subject": message.name}
            )  # fmt: skip
        if metric == c.CLICKED_EMAIL:
            props["URL"] = "https://shop.example.com/collections/new"
        elif metric == c.BOUNCED_EMAIL:
            props["Bounce Type"] = "hard"
        if "$event_id" not in props:
            props["$event_id"] = event_id(number)
        return props

    def _attribution_props(self, ev: EventColumns, i: int) -> Json:
        kind = int(ev.kind[i])
        source = int(ev.source[i])
        out: Json = {"$attributed_event_id": event_id(int(ev.attr[i]))}
        if kind == KIND_CAMPAIGN:
            campaign = self.cat.campaigns[source]
            out.update({"$message": campaign.message_id, "$attributed_channel": campaign.channel})
        else:
            message = self.cat.flow_messages[source]
            out.update(
                {"$message": message.id, "$flow": self.cat.flows[message.flow_index].id,
                 "$attributed_channel": message.channel}
            )  # fmt: skip
        return out

    def attribution(self, ev: EventColumns, i: int, base: str) -> Json:
        """Render the attribution resource of an attributed order (include=attributions)."""
        eid = event_id(int(ev.id[i]))
        kind = int(ev.kind[i])
        source = int(ev.source[i])
        rels: Json = {
            "event": {"data": {"type": "event", "id": eid}},
            "attributed-event": {"data": {"type": "event", "id": event_id(int(ev.attr[i]))}},
        }
        if kind == KIND_CAMPAIGN:
            campaign = self.cat.campaigns[source]
            rels["campaign"] = {"data": {"type": "campaign", "id": campaign.id}}
            rels["campaign-message"] = {
                "data": {"type": "campaign-message", "id": campaign.message_id}
            }
        elif kind == KIND_FLOW:
            message = self.cat.flow_messages[source]
            rels["flow"] = {"data": {"type": "flow", "id": self.cat.flows[message.flow_index].id}}
            rels["flow-message"] = {"data": {"type": "flow-message", "id": message.id}}
        aid = eid + "-attribution"
        return {
            "type": "attribution",
            "id": aid,
            "relationships": rels,
            "links": {"self": f"{base}/api/attributions/{aid}/"},
        }

    # Catalogue --------------------------------------------------------------------------------

    def metric(self, index: int, base: str) -> Json:
        """Render a metric."""
        m = self.cat.metrics[index]
        return {
            "type": "metric",
            "id": m.id,
            "attributes": {
                "name": m.name,
                "created": iso(m.created),
                "updated": iso(m.created),
                "integration": dict(m.integration),
            },
            "relationships": {
                "flow-triggers": rel(
                    base,
                    "metric",
                    m.id,
                    "flow-triggers",
                    [
                        {"type": "flow", "id": fl.id}
                        for fl in self.cat.flows
                        if self.triggers(fl) == ("metric", index)
                    ],
                )
            },
            "links": {"self": f"{base}/api/metrics/{m.id}/"},
        }

    def profile(self, index: int, base: str) -> Json:
        """Render a profile."""
        cat = self.cat
        pid = cat.profile_id(index)
        first = c.FIRST_NAMES[index % len(c.FIRST_NAMES)]
        last = c.LAST_NAMES[(index // 7) % len(c.LAST_NAMES)]
        sms = bool(cat.list_masks[c.SMS_LIST][index])
        return {
            "type": "profile",
            "id": pid,
            "attributes": {
                "email": f"{first}.{last}.{index}@example.com".lower(),
                "phone_number": f"+1555{index % 10_000_000:07d}" if sms else None,
                "external_id": None,
                "first_name": first,
                "last_name": last,
                "organization": None,
                "locale": "en-US",
                "title": None,
                "image": None,
                "created": iso(int(cat.profile_created[index])),
                "updated": iso(int(cat.profile_updated[index])),
                "last_event_date": None,
                "location": {"country": "United States", "timezone": cat.options.timezone},
                "properties": {"source": "sandbox"},
            },
            "links": {"self": f"{base}/api/profiles/{pid}/"},
        }

    def group(self, kind: str, index: int, base: str) -> Json:
        """Render a list (`kind="list"`) or a segment."""
        if kind == "list":
            g = self.cat.lists[index]
            attrs: Json = {"name": g.name, "created": iso(g.created), "updated": iso(g.updated),
                           "opt_in_process": g.opt_in}  # fmt: skip
        else:
            g = self.cat.segments[index]
            attrs = {
                "name": g.name,
                "definition": {
                    "condition_groups": [
                        {"conditions": [{"type": "profile-group-membership", "is_member": True,
                                         "group_ids": [self.cat.lists[0].id]}]}
                    ]
                },
                "created": iso(g.created),
                "updated": iso(g.updated),
                "is_active": True,
                "is_processing": False,
                "is_starred": index == 0,
            }  # fmt: skip
        triggered = [{"type": "flow", "id": fl.id} for fl in self.cat.flows
                     if self.triggers(fl) == (kind, index)]  # fmt: skip
        return {"type": kind, "id": g.id, "attributes": attrs,
                "relationships": {"profiles": rel(base, kind, g.id, "profiles"),
                                  "tags": rel(base, kind, g.id, "tags", []),
                                  "flow-triggers": rel(base, kind, g.id, "flow-triggers",
                                                       triggered)},
                "links": {"self": f"{base}/api/{kind}s/{g.id}/"}}  # fmt: skip

    def triggers(self, fl: Flow) -> tuple[str, int] | None:
        """Return what triggers a flow: `("list", index)` or `("metric", index)`, or None."""
        if fl.flow_type == "welcome":
            return ("list", 0)
        metric = _METRIC_TRIGGERS.get(fl.flow_type)
        return None if metric is None else ("metric", metric)

    def group_size(self, kind: str, index: int) -> int:
        """Return how many profiles belong to a list or segment."""
        masks = self.cat.list_masks if kind == "list" else self.cat.segment_masks
        return int(np.count_nonzero(masks[index]))

    def form(self, index: int, base: str) -> Json:
        """Render a signup form."""
        f = self.cat.forms[index]
        return {
            "type": "form",
            "id": f.id,
            "attributes": {"name": f.name, "status": f.status, "ab_test": False,
                           "created_at": iso(f.created), "updated_at": iso(f.updated)},
            "links": {"self": f"{base}/api/forms/{f.id}/"},
        }  # fmt: skip

    def template(self, index: int, base: str) -> Json:
        """Render an email template."""
        tid, name, created = self.cat.templates[index]
        return {
            "type": "template",
            "id": tid,
            "attributes": {"name": name, "editor_type": "CODE",
                           "html": f"<html><body><h1>{name}</h1></body></html>",
                           "text": name, "amp": None,
                           "created": iso(created), "updated": iso(created)},
            "links": {"self": f"{base}/api/templates/{tid}/"},
        }  # fmt: skip

    def campaign(self, cp: Campaign, base: str) -> Json:
        """Render a campaign."""
        return {
            "type": "campaign",
            "id": cp.id,
            "attributes": {
                "name": cp.name,
                "status": "Sent",
                "archived": False,
                "audiences": {"included": [self.cat.lists[cp.list_index].id], "excluded": []},
                "send_options": {"use_smart_sending": True},
                "tracking_options": {"add_tracking_params": False, "is_tracking_clicks": True,
                                     "is_tracking_opens": True}
                if cp.channel == "email" else {"add_tracking_params": False},
                "send_strategy": {"method": "static", "datetime": iso(cp.send_ts)},
                "created_at": iso(cp.send_ts - 3 * 86_400),
                "scheduled_at": iso(cp.send_ts - 86_400),
                "updated_at": iso(cp.send_ts),
                "send_time": iso(cp.send_ts),
            },
            "relationships": {
                "campaign-messages": rel(base, "campaign", cp.id, "campaign-messages",
                                         [{"type": "campaign-message", "id": cp.message_id}]),
                "tags": rel(base, "campaign", cp.id, "tags", []),
            },
            "links": {"self": f"{base}/api/campaigns/{cp.id}/"},
        }  # fmt: skip

    def campaign_message(self, cp: Campaign, base: str) -> Json:
        """Render a campaign's message."""
        if cp.channel == "email":
            definition: Json = {
                "channel": "email",
                "label": cp.name,
                "content": {"subject": cp.subject, "preview_text": "Open for details",
                            "from_email": "hello@shop.example.com", "from_label": "Sandbox"},
            }  # fmt: skip
        else:
            definition = {"channel": "sms", "content": {"body": f"{cp.name}: reply STOP to end"}}
        mid = cp.message_id
        rels: Json = {"campaign": rel(base, "campaign-message", mid, "campaign",
                                      {"type": "campaign", "id": cp.id})}  # fmt: skip
        if cp.template_id is not None:
            rels["template"] = rel(base, "campaign-message", mid, "template",
                                   {"type": "template", "id": cp.template_id})  # fmt: skip
        return {
            "type": "campaign-message",
            "id": cp.message_id,
            "attributes": {
                "definition": definition,
                "send_times": [{"datetime": iso(cp.send_ts), "is_local": False}],
                "created_at": iso(cp.send_ts - 3 * 86_400),
                "updated_at": iso(cp.send_ts),
            },
            "relationships": rels,
            "links": {"self": f"{base}/api/campaign-messages/{cp.message_id}/"},
        }

    def flow(self, fl: Flow, base: str) -> Json:
        """Render a flow."""
        return {
            "type": "flow",
            "id": fl.id,
            "attributes": {"name": fl.name, "status": "live", "archived": False,
                           "created": iso(fl.created), "updated": iso(fl.created + 86_400),
                           "trigger_type": fl.trigger_type},
            "relationships": {
                "flow-actions": rel(base, "flow", fl.id, "flow-actions",
                                    [{"type": "flow-action", "id": a.id} for a in fl.actions]),
                "tags": rel(base, "flow", fl.id, "tags", []),
            },
            "links": {"self": f"{base}/api/flows/{fl.id}/"},
        }  # fmt: skip

    def flow_action(self, action: FlowAction, base: str) -> Json:
        """Render a flow action (a send or a time delay)."""
        fl = self.cat.flows[action.flow_index]
        if action.kind == "delay":
            definition: Json = {
                "id": action.id,
                "type": "time-delay",
                "data": {"unit": "hours", "value": action.delay_s // 3600},
            }
        else:
            assert action.message_index is not None
            message = self.cat.flow_messages[action.message_index]
            definition = {
                "id": action.id,
                "type": f"send-{action.kind}",
                "data": {"status": "live", "message": self.flow_message_definition(message)},
            }
        messages = (
            []
            if action.message_index is None
            else [{"type": "flow-message", "id": self.cat.flow_messages[action.message_index].id}]
        )
        return {
            "type": "flow-action",
            "id": action.id,
            "attributes": {"created": iso(fl.created), "updated": iso(fl.created + 86_400),
                           "definition": definition},
            "relationships": {"flow": rel(base, "flow-action", action.id, "flow",
                                          {"type": "flow", "id": fl.id}),
                              "flow-messages": rel(base, "flow-action", action.id,
                                                   "flow-messages", messages)},
            "links": {"self": f"{base}/api/flow-actions/{action.id}/"},
        }  # fmt: skip

    def flow_message_definition(self, message: FlowMessage) -> Json:
        """Return a flow message's content definition (FlowEmail or FlowSms)."""
        if message.channel == "email":
            return {
                "name": message.name,
                "subject_line": message.name,
                "from_email": "hello@shop.example.com",
                "from_label": "Sandbox",
                "template_id": message.template_id,
            }
        return {"name": message.name, "body": f"{message.name}: reply STOP to end"}

    def flow_message(self, message: FlowMessage, base: str) -> Json:
        """Render a flow message."""
        fl = self.cat.flows[message.flow_index]
        definition = self.flow_message_definition(message)
        return {
            "type": "flow-message",
            "id": message.id,
            "attributes": {"channel": message.channel, "created": iso(fl.created),
                           "updated": iso(fl.created + 86_400), "definition": definition},
            "relationships": self._flow_message_rels(message, base),
            "links": {"self": f"{base}/api/flow-messages/{message.id}/"},
        }  # fmt: skip

    def _flow_message_rels(self, message: FlowMessage, base: str) -> Json:
        rels: Json = {
            "flow-action": rel(
                base,
                "flow-message",
                message.id,
                "flow-action",
                {"type": "flow-action", "id": message.action_id},
            )
        }
        if message.template_id is not None:
            rels["template"] = rel(
                base,
                "flow-message",
                message.id,
                "template",
                {"type": "template", "id": message.template_id},
            )
        return rels  # fmt: skip

    def account(self, base: str) -> Json:
        """Render the account."""
        opts = self.cat.options
        aid = c.short_id(opts.seed, "account", 0)
        return {
            "type": "account",
            "id": aid,
            "attributes": {
                "test_account": True,
                "contact_information": {
                    "default_sender_name": opts.organization_name,
                    "default_sender_email": "hello@shop.example.com",
                    "website_url": "https://shop.example.com",
                    "organization_name": opts.organization_name,
                    "street_address": {"address1": "1 Main St", "address2": None,
                                       "city": "Boston", "region": "MA",
                                       "country": "United States", "zip": "02110"},
                },
                "industry": "Apparel & Accessories",
                "timezone": opts.timezone,
                "preferred_currency": opts.currency,
                "public_api_key": c.short_id(opts.seed, "public-key", 0),
                "locale": "en-US",
            },
            "links": {"self": f"{base}/api/accounts/{aid}/"},
        }  # fmt: skip
