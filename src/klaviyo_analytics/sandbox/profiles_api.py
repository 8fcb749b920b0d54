"""GET /api/profiles: filter, sort and page the store's profiles (numpy columns, no scans of
rendered documents), with `additional-fields[profile]` and sparse fieldsets."""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.filters import Condition
from klaviyo_analytics.sandbox.profile_facts import (
    SUPPRESSION_REASONS,
    Facts,
    ProfileFacts,
    predictive_analytics,
    subscriptions,
)
from klaviyo_analytics.sandbox.query import Query, read_query
from klaviyo_analytics.sandbox.render import iso
from klaviyo_analytics.sandbox.state import (
    SandboxState,
    base_url,
    decode_cursor,
    encode_cursor,
    next_link,
    page_size,
    respond,
)

_SUPPRESSION = "subscriptions.email.marketing.suppression."
_LIST_SUPPRESSION = "subscriptions.email.marketing.list_suppressions."


def _compare(col: np.ndarray, op: str, value: Any) -> np.ndarray:
    ops = {"greater-than": np.greater, "greater-or-equal": np.greater_equal,
           "less-than": np.less, "less-or-equal": np.less_equal, "equals": np.equal}  # fmt: skip
    result: np.ndarray = ops[op](col, value)
    return result


class ProfileIndex:
    """Find profiles by the values the filters name, without rendering them."""

    def __init__(self, state: SandboxState) -> None:
        """Use the state's catalogue and renderer."""
        self.cat = state.catalog
        self.render = state.renderer
        self._email_order: np.ndarray | None = None

    def email(self, index: int) -> str:
        """Return the email of the profile at `index`."""
        return str(self.render.profile(index, "")["attributes"]["email"])

    def by_email(self, email: str) -> int | None:
        """Return the index of the profile with this email (its index is part of it)."""
        try:
            index = int(email.rsplit("@", 1)[0].rsplit(".", 1)[1])
        except (IndexError, ValueError):
            return None
        ok = 0 <= index < self.cat.options.profiles and self.email(index) == email
        return index if ok else None

    def by_phone(self, phone: str) -> list[int]:
        """Return the profiles with this phone number (SMS subscribers only have one)."""
        if not phone.startswith("+1555") or not phone[5:].isdigit():
            return []
        sms = self.cat.list_masks[c.SMS_LIST]
        low = int(phone[5:])
        found = np.arange(low, self.cat.options.profiles, 10_000_000)
        return [int(i) for i in found if sms[i] and len(phone) == 12]

    def email_order(self) -> np.ndarray:
        """Return profile indices sorted by email (computed once)."""
        if self._email_order is None:
            emails = [self.email(i) for i in range(self.cat.options.profiles)]
            self._email_order = np.argsort(np.array(emails), kind="stable")
        return self._email_order


def _keep(n: int, indices: list[int]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[[i for i in indices if i is not None]] = True
    return mask


def _mask(cond: Condition, lookup: ProfileIndex, facts: ProfileFacts, now: int) -> np.ndarray:
    cat = lookup.cat
    n = cat.options.profiles
    values = cond.value if isinstance(cond.value, list) else [cond.value]
    field = cond.field
    if field in ("created", "updated"):
        col = cat.profile_created if field == "created" else cat.profile_updated
        return _compare(col, cond.op, cond.value)
    if field == "id":
        return _keep(n, [i for i in map(cat.profile_index, values) if i is not None])
    if field == "email":
        return _keep(n, [i for i in map(lookup.by_email, values) if i is not None])
    if field == "phone_number":
        return _keep(n, [i for v in values for i in lookup.by_phone(str(v))])
    if field.startswith(_SUPPRESSION):
        f = facts.at(now)
        if field.endswith(".reason"):
            code = (
                SUPPRESSION_REASONS.index(cond.value)
                if cond.value in SUPPRESSION_REASONS[1:]
                else -1
            )
            same: np.ndarray = f.reason == code
            return same
        hit: np.ndarray = (f.suppressed_at > 0) & _compare(f.suppressed_at, cond.op, cond.value)
        return hit
    # external_id, _kx and list suppressions: the store's profiles have none.
    return np.zeros(n, dtype=bool)


def _order(index: np.ndarray, query: Query, lookup: ProfileIndex, facts: ProfileFacts,
           now: int) -> np.ndarray:  # fmt: skip
    field, descending = query.sort_field("id")
    cat = lookup.cat
    if field in ("created", "updated"):
        col = cat.profile_created if field == "created" else cat.profile_updated
        index = index[np.argsort(col[index], kind="stable")]
    elif field == "email":
        rank = np.empty(cat.options.profiles, dtype=np.int64)
        rank[lookup.email_order()] = np.arange(cat.options.profiles)
        index = index[np.argsort(rank[index], kind="stable")]
    elif field.startswith(_SUPPRESSION):
        col = facts.at(now).suppressed_at
        index = index[np.argsort(col[index], kind="stable")]
    return index[::-1] if descending else index


def profile_document(state: SandboxState, facts: ProfileFacts, query: Query, now: int,
                     index: int, base: str, joined: bool = False) -> dict[str, Any]:  # fmt: skip
    """Render one profile with the additional fields asked for, then its sparse fieldset."""
    cat = state.catalog
    doc = state.renderer.profile(index, base)
    sms = bool(cat.list_masks[c.SMS_LIST][index])
    if joined:  # members of a list or segment joined it when they were created
        doc["attributes"]["joined_group_at"] = iso(int(cat.profile_created[index]))
    snapshot: Facts | None = None
    if query.wants("profile", "subscriptions"):
        snapshot = facts.at(now)
        member = any(bool(m[index]) for k, m in enumerate(cat.list_masks) if k != c.SMS_LIST)
        doc["attributes"]["subscriptions"] = subscriptions(
            snapshot, index, int(cat.profile_created[index]), member, sms
        )
    if query.wants("profile", "predictive_analytics"):
        snapshot = snapshot or facts.at(now)
        rate = float(facts.yearly_orders(snapshot)[index])
        alive = float(facts.alive(snapshot)[index])
        doc["attributes"]["predictive_analytics"] = predictive_analytics(
            snapshot, rate, alive, facts.expected_order_cents(index), index, sms
        )
    return query.project(doc)


async def list_profiles(state: SandboxState, request: Request, facts: ProfileFacts,
                        lookup: ProfileIndex) -> Response:  # fmt: skip
    """Answer GET /api/profiles; raise ApiError for bad parameters.

    Requests asking for predictive analytics count against their own, lower limits (10/s,
    150/m, as Klaviyo's description of the operation says).
    """
    extra = request.query_params.get("additional-fields[profile]", "")
    predictive = "predictive_analytics" in (part.strip() for part in extra.split(","))
    headers = state.guard(
        request, "get_profiles+predictive_analytics" if predictive else "get_profiles"
    )
    size = page_size(request, 20, 100)
    query = read_query(request, "get_profiles", "profile")
    now = state.clock.now_ts()
    mask = np.ones(state.catalog.options.profiles, dtype=bool)
    for cond in query.conditions:
        mask &= _mask(cond, lookup, facts, now)
    index = _order(np.flatnonzero(mask), query, lookup, facts, now)
    cursor = decode_cursor(request, 1)
    offset = cursor[0] if cursor else 0
    base = base_url(request)
    links = {"self": str(request.url)}
    if offset + size < index.size:
        links["next"] = next_link(request, encode_cursor(offset + size))
    data = [profile_document(state, facts, query, now, int(i), base)
            for i in index[offset : offset + size]]  # fmt: skip
    doc: dict[str, Any] = {"data": data, "links": links}
    if query.include:
        doc["included"] = []  # the store's profiles have no push tokens or conversations
    return respond(doc, headers)
