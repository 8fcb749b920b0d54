"""`additional-fields[profile]`: subscriptions and predictive analytics agree with the store."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.render import iso
from tests.fixtures.sandbox import SandboxFactory
from tests.integration.sandbox.conftest import SchemaCheck, client_for

EXTRA = "subscriptions,predictive_analytics"


def _all_profiles(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    query: dict[str, str] | None = {"page[size]": "100", **params}
    url: str | None = "/api/profiles"
    while url:
        page = api.get(url, params=query).json()
        out += page["data"]
        url, query = page["links"].get("next"), None  # the next link carries the query
    return out


def _truth(gen: StoreGenerator) -> dict[str, Any]:
    ev = gen.events_between(gen.start_ts, gen.end_ts + 1)
    n = gen.options.profiles
    placed = (ev.metric == c.PLACED_ORDER) & (ev.profile >= 0)
    cents = np.bincount(ev.profile[placed], weights=ev.value[placed], minlength=n)
    orders = np.bincount(ev.profile[placed], minlength=n)
    suppressing = np.isin(ev.metric, [c.BOUNCED_EMAIL, c.MARKED_SPAM, c.UNSUBSCRIBED])
    first: dict[int, int] = {}
    for who, ts in zip(ev.profile[suppressing].tolist(), ev.ts[suppressing].tolist(), strict=True):
        first.setdefault(who, ts)
    return {"cents": cents, "orders": orders, "suppressed": first}


def test_profiles_carry_subscriptions_and_predictive_analytics_in_the_spec_shape(
    api: httpx.Client, check_response: SchemaCheck
) -> None:
    body = api.get("/api/profiles", params={"additional-fields[profile]": EXTRA}).json()
    check_response("get", "/api/profiles", 200, body)
    attrs = body["data"][0]["attributes"]
    assert {"subscriptions", "predictive_analytics"} <= set(attrs)
    plain = api.get("/api/profiles").json()["data"][0]["attributes"]
    assert "subscriptions" not in plain and "predictive_analytics" not in plain


def test_historic_clv_is_exact_and_suppressions_are_the_stores(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    truth = _truth(sandbox_generator)
    cat = sandbox_generator.catalog
    profiles = _all_profiles(api, **{"additional-fields[profile]": EXTRA})
    assert len(profiles) == sandbox_generator.options.profiles
    suppressed = {}
    for doc in profiles:
        i = cat.profile_index(doc["id"])
        assert i is not None
        pa = doc["attributes"]["predictive_analytics"]
        assert pa["historic_clv"] == round(int(truth["cents"][i]) / 100, 2)
        assert pa["historic_number_of_orders"] == int(truth["orders"][i])
        assert pa["total_clv"] == round(pa["historic_clv"] + pa["predicted_clv"], 2)
        assert 0 <= pa["churn_probability"] <= 1 and pa["predicted_number_of_orders"] >= 0
        if pa["historic_number_of_orders"]:
            assert pa["average_order_value"] == round(
                pa["historic_clv"] / pa["historic_number_of_orders"], 2
            )
        marketing = doc["attributes"]["subscriptions"]["email"]["marketing"]
        if marketing["suppression"]:
            suppressed[i] = marketing["suppression"][0]["timestamp"]
            assert marketing["can_receive_email_marketing"] is False
        sms = doc["attributes"]["subscriptions"]["sms"]["marketing"]
        assert sms["can_receive_sms_marketing"] == bool(cat.list_masks[c.SMS_LIST][i])
    assert suppressed == {i: iso(ts) for i, ts in truth["suppressed"].items()}
    assert suppressed
    assert sum(int(truth["orders"][cat.profile_index(d["id"]) or 0]) > 0 for d in profiles) > 0


def test_predictions_follow_the_purchase_model_and_repeat_per_seed(
    api: httpx.Client, make_sandbox: SandboxFactory, sandbox_generator: StoreGenerator
) -> None:
    params = {"additional-fields[profile]": "predictive_analytics", "page[size]": "100"}
    first = api.get("/api/profiles", params=params).json()["data"]
    with client_for(make_sandbox()) as other:
        again = other.get("/api/profiles", params=params).json()["data"]
    assert [d["attributes"] for d in first] == [d["attributes"] for d in again]
    cat = sandbox_generator.catalog
    model = sandbox_generator.customers
    now = sandbox_generator.end_ts
    pa = {cat.profile_index(d["id"]): d["attributes"]["predictive_analytics"] for d in first}
    index = np.array(sorted(i for i in pa if i is not None))
    churn = np.array([pa[int(i)]["churn_probability"] for i in index])
    alive = model.death_ts[index] > now
    created = model.created[index] <= now
    # The churn probability comes from the true model: the truly lapsed score higher.
    assert alive[created].any() and (~alive[created]).any()
    assert churn[created & ~alive].mean() > 1.5 * churn[created & alive].mean()
    # Predicted orders follow the true purchase rate: the faster half is predicted more.
    orders = np.array([pa[int(i)]["predicted_number_of_orders"] for i in index])
    rate = model.rate[index]
    fast = rate > np.median(rate)
    assert orders[fast & alive].mean() > orders[~fast & alive].mean()


def test_profiles_filter_and_sort_on_suppression_and_identifiers(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator
) -> None:
    truth = _truth(sandbox_generator)
    cat = sandbox_generator.catalog
    body = api.get("/api/profiles", params={
        "filter": "greater-than(subscriptions.email.marketing.suppression.timestamp,"
                  f"{iso(sandbox_generator.start_ts)})",
        "sort": "-subscriptions.email.marketing.suppression.timestamp",
        "additional-fields[profile]": "subscriptions", "page[size]": "100",
    }).json()  # fmt: skip
    check_response("get", "/api/profiles", 200, body)
    ids = [cat.profile_index(d["id"]) for d in body["data"]]
    assert set(ids) == set(truth["suppressed"])
    stamps = [d["attributes"]["subscriptions"]["email"]["marketing"]["suppression"][0]["timestamp"]
              for d in body["data"]]  # fmt: skip
    assert stamps == sorted(stamps, reverse=True)
    sms_member = int(np.flatnonzero(cat.list_masks[c.SMS_LIST])[0])
    phone = f"+1555{sms_member:07d}"
    found = api.get("/api/profiles", params={"filter": f'equals(phone_number,"{phone}")'}).json()
    assert [d["id"] for d in found["data"]] == [cat.profile_id(sms_member)]
    none = api.get("/api/profiles", params={"filter": 'equals(external_id,"x")'}).json()
    assert none["data"] == []


def test_profiles_sorted_by_updated_come_in_updated_order(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    profiles = _all_profiles(api, sort="updated")
    stamps = [d["attributes"]["updated"] for d in profiles]
    assert stamps == sorted(stamps) and len(stamps) == sandbox_generator.options.profiles


def test_a_customer_with_a_vanishing_order_rate_has_no_expected_next_order() -> None:
    # A rate of one order in 8,000 years once put the date past year 9999 (a 500).
    from klaviyo_analytics.sandbox.profile_facts import Facts, predictive_analytics

    one = np.ones(1, dtype=np.int64)
    facts = Facts(now=1_700_000_000, orders=one, order_cents=one * 5000,
                  last_order=one * 1_690_000_000, suppressed_at=one * 0, reason=one * 0)  # fmt: skip
    rare = predictive_analytics(facts, 365 / (8_000 * 365), 0.01, 5000.0, 0, False)
    assert rare["expected_date_of_next_order"] is None
    usual = predictive_analytics(facts, 4.0, 0.9, 5000.0, 0, False)
    assert str(usual["expected_date_of_next_order"]).startswith("2024-02")
