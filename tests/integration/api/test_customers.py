"""Customer analytics endpoints equal independent computations over the raw synced events.

Cohorts, RFM, products and the funnel are recomputed here in plain Python from the rows of
`klaviyo_events` (orders attributed by the facts tests' independent SQL), after a sync, after
a full re-sync and after late-arriving orders (with a refund, which changes nothing: refunds
are not netted, docs/analytics.md).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from klaviyo_analytics import wiring
from klaviyo_analytics.analytics.customers import rfm_group
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sync import sync_service
from tests.integration.analytics.truth import compute
from tests.integration.api.conftest import NOW, STORE_TZ, Api, ApiFactory

TODAY = NOW.astimezone(ZoneInfo(STORE_TZ)).date()
ALL = {"start": "2020-01-01", "end": TODAY.isoformat()}
CENT = Decimal("0.01")


def _events(conninfo: str, *names: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT e.*, m.name FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id"
            " WHERE m.name = ANY(%s) ORDER BY e.timestamp, e.id",
            [list(names)],
        ).fetchall()


def _orders(conninfo: str) -> list[dict[str, Any]]:
    """Every Placed Order with a profile: id, local day, value, channel (independent SQL)."""
    return [o for o in compute(conninfo, STORE_TZ).orders if o["profile_id"] is not None]


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def expected_cohorts(orders: list[dict[str, Any]], start: date, end: date) -> list[Any]:
    first: dict[str, date] = {}
    for o in orders:
        first[o["profile_id"]] = min(first.get(o["profile_id"], o["day"]), o["day"])
    members = {p: d.replace(day=1) for p, d in first.items() if start <= d <= end}
    last = max([TODAY.replace(day=1)] + [o["day"].replace(day=1) for o in orders])
    out = []
    for month in sorted(set(members.values())):
        who = {p for p, m in members.items() if m == month}
        periods = []
        cumulative = Decimal(0)
        k = 0
        cur = month
        while cur <= last:
            mine = [o for o in orders if o["profile_id"] in who and o["day"].replace(day=1) == cur]
            revenue = sum((o["value"] for o in mine), Decimal(0))
            cumulative += revenue
            periods.append({
                "index": k, "active_customers": len({o["profile_id"] for o in mine}),
                "orders": len(mine), "revenue": revenue,
                "attributed_revenue": sum((o["value"] for o in mine
                                           if o["channel"] != "unattributed"), Decimal(0)),
                "cumulative_revenue_per_customer": (cumulative / len(who)).quantize(
                    CENT, ROUND_HALF_EVEN),
            })  # fmt: skip
            k += 1
            cur = (cur + timedelta(days=32)).replace(day=1)
        out.append({"cohort": month.strftime("%Y-%m"), "customers": len(who), "periods": periods})
    return out


def _decimals(body: Any) -> Any:
    """Money fields of a JSON body as Decimals (the API sends them as strings)."""
    if isinstance(body, dict):
        return {
            k: _money(v) if k in ("revenue", "attributed_revenue", "monetary",
                                  "cumulative_revenue_per_customer", "units")
            and v is not None else _decimals(v)
            for k, v in body.items()
        }  # fmt: skip
    if isinstance(body, list):
        return [_decimals(v) for v in body]
    return body


def _score(values: dict[str, Any], descending: bool = False) -> dict[str, int]:
    # 1 + floor(5 * percent_rank), capped at 5; percent_rank = (rank - 1) / (n - 1).
    ordered = sorted(values.values(), reverse=descending)
    n = len(ordered)
    rank = {}
    for i, v in enumerate(ordered):
        rank.setdefault(v, i)
    out = {}
    for p, v in values.items():
        pr = rank[v] / (n - 1) if n > 1 else 0.0
        out[p] = min(5, 1 + int(5 * pr + 1e-12))
    return out


def expected_rfm(orders: list[dict[str, Any]], as_of: date) -> dict[str, dict[str, Any]]:
    mine = [o for o in orders if o["day"] <= as_of]
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in mine:
        by[o["profile_id"]].append(o)
    recency = {p: (as_of - max(o["day"] for o in os)).days for p, os in by.items()}
    frequency = {p: len(os) for p, os in by.items()}
    monetary = {p: sum((o["value"] for o in os), Decimal(0)) for p, os in by.items()}
    r, f, m = _score(recency, descending=True), _score(frequency), _score(monetary)
    return {
        p: {"recency_days": recency[p], "frequency": frequency[p], "monetary": monetary[p],
            "r_score": r[p], "f_score": f[p], "m_score": m[p],
            "group": rfm_group(r[p], f[p], m[p])}
        for p in by
    }  # fmt: skip


def expected_products(conninfo: str, start: date, end: date) -> dict[str, dict[str, Any]]:
    zone = ZoneInfo(STORE_TZ)
    orders = _events(conninfo, "Placed Order")
    lines = []
    for o in orders:
        props = (
            o["properties"] if isinstance(o["properties"], dict) else json.loads(o["properties"])
        )
        for item in props.get("Items") or []:
            lines.append({"order": o["id"], "ts": o["timestamp"], "profile": o["profile_id"],
                          "day": o["timestamp"].astimezone(zone).date(),
                          "product": item["ProductID"], "qty": _money(item["Quantity"]),
                          "row": _money(item["RowTotal"])})  # fmt: skip
    products_of: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    for line in lines:
        products_of[(line["order"], line["ts"])].add(line["product"])
    sequence: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for o in orders:
        if o["profile_id"] is not None:
            sequence[o["profile_id"]].append((o["timestamp"], o["id"]))
    following: dict[tuple[str, datetime], tuple[str, datetime]] = {}
    for seq in sequence.values():
        seq.sort()
        for (ts, oid), (nts, nid) in pairwise(seq):
            following[(oid, ts)] = (nid, nts)
    in_range = [x for x in lines if start <= x["day"] <= end]
    out: dict[str, dict[str, Any]] = {}
    for product in {x["product"] for x in in_range}:
        mine = [x for x in in_range if x["product"] == product]
        per_customer = Counter()  # type: Counter[str]
        for key in {(x["profile"], x["order"]) for x in mine if x["profile"] is not None}:
            per_customer[key[0]] += 1
        nexts: Counter[str] = Counter()
        for key in {(x["order"], x["ts"]) for x in mine}:
            if key in following:
                nexts.update(products_of[following[key]])
        best = min(nexts, key=lambda p: (-nexts[p], p)) if nexts else None
        customers = len(per_customer)
        repeaters = sum(1 for n in per_customer.values() if n >= 2)
        out[product] = {
            "orders": len({x["order"] for x in mine}),
            "units": sum((x["qty"] for x in mine), Decimal(0)),
            "revenue": sum((x["row"] for x in mine), Decimal(0)),
            "customers": customers,
            "repeat_customers": repeaters,
            "repeat_purchase_rate": round(repeaters / customers, 4) if customers else 0.0,
            "bought_next": best,
        }
    return out


def expected_funnel(conninfo: str, start: date, end: date) -> dict[str, list[int]]:
    zone = ZoneInfo(STORE_TZ)
    lo = datetime.combine(start, datetime.min.time(), zone).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    week = timedelta(days=7)
    events = _events(conninfo, "Viewed Product", "Started Checkout", "Placed Order",
                     "Opened Email", "Clicked Email", "Clicked SMS")  # fmt: skip
    by: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if e["profile_id"] is not None:
            by[e["profile_id"]][e["name"]].append(e)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for mine in by.values():
        views = [e["timestamp"] for e in mine["Viewed Product"] if lo <= e["timestamp"] < hi]
        if not views:
            continue
        checkouts = [e["timestamp"] for e in mine["Started Checkout"]
                     if any(v <= e["timestamp"] <= v + week for v in views)]  # fmt: skip
        bought = any(c <= e["timestamp"] <= c + week
                     for e in mine["Placed Order"] for c in checkouts)  # fmt: skip
        first = min(views)
        touches = [
            e for e in mine["Opened Email"] + mine["Clicked Email"] + mine["Clicked SMS"]
            if e["attributed_source_type"] and e["attributed_message_id"]
            and e["timestamp"] < first
            and first - e["timestamp"] <= timedelta(hours=24 if e["name"] == "Clicked SMS"
                                                    else 120)
        ]  # fmt: skip
        channel = "unattributed"
        if touches:
            last = max(touches, key=lambda e: (e["timestamp"], e["id"]))
            medium = "sms" if last["name"] == "Clicked SMS" else "email"
            channel = f"{medium}_{last['attributed_source_type']}"
        counts = out[channel]
        counts[0] += 1
        counts[1] += bool(checkouts)
        counts[2] += bool(checkouts) and bought
    return dict(out)


async def assert_all_exact(api: Api, conninfo: str) -> None:
    orders = _orders(conninfo)
    assert orders, "the sandbox store has orders"
    cohorts = _decimals(await api.get_json("/api/customers/cohorts", **ALL))
    assert cohorts["timezone"] == STORE_TZ
    assert cohorts["cohorts"] == expected_cohorts(orders, date(2020, 1, 1), TODAY)
    assert sum(c["customers"] for c in cohorts["cohorts"]) == len({o["profile_id"] for o in orders})

    for as_of in (TODAY, TODAY - timedelta(days=9)):
        truth = expected_rfm(orders, as_of)
        body = _decimals(await api.get_json("/api/customers/rfm", as_of=as_of.isoformat()))
        assert body["customers"] == len(truth)
        for g in body["groups"]:
            members = [p for p, v in truth.items() if v["group"] == g["group"]]
            assert g["customers"] == len(members), g["group"]
            assert g["revenue"] == sum((truth[p]["monetary"] for p in members), Decimal(0))
            assert g["orders"] == sum(truth[p]["frequency"] for p in members)
        before = expected_rfm(orders, as_of - timedelta(days=30))
        moved = sum(1 for p, v in truth.items() if p in before and before[p]["group"] != v["group"])
        assert body["moved"] == moved
        assert body["new_customers"] == sum(1 for p in truth if p not in before)
        page = _decimals(await api.get_json("/api/customers/rfm/profiles",
                                            as_of=as_of.isoformat(), limit=1000))  # fmt: skip
        assert page["total"] == len(truth)
        for row in page["profiles"]:
            want = truth[row["profile_id"]]
            assert {k: row[k] for k in want} == want, row["profile_id"]
        monetary = [row["monetary"] for row in page["profiles"]]
        assert monetary == sorted(monetary, reverse=True)

    products = _decimals(await api.get_json("/api/products", **ALL))
    want = expected_products(conninfo, date(2020, 1, 1), TODAY)
    got = {p["product_id"]: p for p in products["products"]}
    assert set(got) == set(want) and len(want) > 5
    for product, figures in want.items():
        assert {k: got[product][k] for k in figures} == figures, product

    start = TODAY - timedelta(days=13)
    body = await api.get_json("/api/funnel", start=start.isoformat(), end=TODAY.isoformat())
    funnel = expected_funnel(conninfo, start, TODAY)
    got_channels = {ch: [s["profiles"] for s in steps] for ch, steps in body["channels"].items()}
    assert got_channels == funnel
    totals = [sum(c[k] for c in funnel.values()) for k in range(3)]
    assert [s["profiles"] for s in body["steps"]] == totals and totals[2] > 0
    assert body["steps"][1]["conversion_rate"] == round(totals[1] / totals[0], 4)


async def test_customer_analytics_equal_raw_events_after_a_sync(
    api: Api, synced_conninfo: str
) -> None:
    await assert_all_exact(api, synced_conninfo)


async def test_customer_analytics_stay_exact_after_a_full_resync(
    make_api: ApiFactory, synced_conninfo: str, sandbox: SandboxServer
) -> None:
    async with make_api(synced_conninfo) as api:
        before = [await api.get_json(p, **ALL) for p in ("/api/customers/cohorts", "/api/products")]
    async with sync_service(synced_conninfo, sandbox) as service:
        await service.sync_all(full=True)
    async with make_api(synced_conninfo) as api:
        after = [await api.get_json(p, **ALL) for p in ("/api/customers/cohorts", "/api/products")]
        assert after == before
        await assert_all_exact(api, synced_conninfo)


async def test_customer_analytics_stay_exact_after_late_orders_and_a_refund(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    with psycopg.connect(synced_conninfo, row_factory=dict_row) as conn:
        metrics = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM klaviyo_metrics")}
        first = conn.execute(
            "SELECT e.* FROM klaviyo_events e WHERE metric_id = %s ORDER BY timestamp LIMIT 1",
            [metrics["Placed Order"]],
        ).fetchone()
        assert first is not None
    # A late order of an existing customer a month before everything else: its cohort moves
    # to an earlier month, and a late order of a new product gets a line.
    late_ts = first["timestamp"] - timedelta(days=35)
    items = [{"ProductID": "late-1", "SKU": "LATE-1", "ProductName": "Late Product",
              "Quantity": 2, "ItemPrice": 10.5, "RowTotal": 21.0, "Categories": ["Late"],
              "Brand": "Late"}]  # fmt: skip
    late = [
        Event(id="late-order-a", timestamp=late_ts, metric_id=metrics["Placed Order"],
              profile_id=first["profile_id"], value=Decimal("21.00"),
              properties={"$value": 21.0, "$event_id": "late-order-a", "Items": items}),
        Event(id="late-refund-a", timestamp=late_ts + timedelta(days=1),
              metric_id=metrics["Refunded Order"], profile_id=first["profile_id"],
              value=Decimal("21.00"), properties={"$value": 21.0, "OrderId": "late-order-a"}),
    ]  # fmt: skip

    async def work(conn: Conn) -> None:
        await EventRepository().upsert_many(conn, late)
        for event in late:
            for hook in wiring.AFTER_EVENTS:
                await hook(conn, event.timestamp, event.timestamp, STORE_TZ)

    async with Database(synced_conninfo, min_size=1, max_size=2) as db:
        await db.run(work)
    async with make_api(synced_conninfo) as api:
        await assert_all_exact(api, synced_conninfo)
        body = await api.get_json("/api/products", **ALL)
        late_row = next(p for p in body["products"] if p["product_id"] == "late-1")
        assert (late_row["orders"], Decimal(late_row["units"]), Decimal(late_row["revenue"])) == (
            1, Decimal(2), Decimal("21.0"))  # fmt: skip


async def test_customer_endpoints_refuse_bad_input_with_422_naming_the_parameter(
    api: Api,
) -> None:
    cases = [
        ("/api/customers/rfm", {"as_of": "2026-13-01"}, "as_of"),
        ("/api/customers/rfm", {"as_of": "yesterday"}, "as_of"),
        ("/api/customers/rfm/profiles", {"group": "Whales"}, "group"),
        ("/api/customers/rfm/profiles", {"limit": "0"}, "limit"),
        ("/api/customers/rfm/profiles", {"offset": "-1"}, "offset"),
        ("/api/customers/cohorts", {"start": "2026-05-01", "end": "2026-04-01"}, "start"),
        ("/api/products", {"start": "2026-05-01"}, "end"),
        ("/api/funnel", {"start": "05/01/2026", "end": "2026-05-02"}, "start"),
    ]
    for path, params, name in cases:
        response = await api.get(path, **params)
        assert response.status_code == 422, (path, params, response.text)
        assert name in response.text, (path, params, response.text)
    # Counts are integers; a reader key reads every endpoint.
    body = await api.get_json("/api/customers/rfm")
    assert all(isinstance(g["customers"], int) for g in body["groups"])
    assert (await api.http.get("/api/customers/rfm")).status_code == 401
