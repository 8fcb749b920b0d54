"""Pages of JSON:API collections: validation record by record, `included` joins, cursor guard.

One bad record must not fail a page: records that do not validate land in `Page.invalid` with the
raw resource and a reason, so the sync can quarantine them and carry on.

Documents are parsed JSON, so JSON objects are tested with `isinstance(x, dict)` and arrays
with `isinstance(x, list)`: the `Mapping` ABC check costs several times more, and it ran
several times per record on the event backfill's hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from klaviyo_analytics.klaviyo.errors import KlaviyoMalformedResponseError, KlaviyoPagingError

if TYPE_CHECKING:
    from klaviyo_analytics.klaviyo.models import Resource

T = TypeVar("T")
R = TypeVar("R", bound="Resource")


@dataclass(frozen=True)
class InvalidRecord:
    """A resource that failed validation: the raw JSON:API object and why it was refused."""

    raw: Mapping[str, Any]
    reason: str
    resource_type: str | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a collection: validated records, refused ones, and the body as received
    (`raw`; None when the caller asked not to keep it)."""

    records: list[T]
    invalid: list[InvalidRecord]
    raw: dict[str, Any] | None
    url: str
    next_url: str | None


def describe_invalid(exc: ValueError) -> str:
    """Return a short reason for a validation failure (field locations and messages)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
    return str(exc)


def relationship_data(resource: Mapping[str, Any], name: str) -> Any:
    """Return `relationships.<name>.data` of a resource, or None when it is absent."""
    relationships = resource.get("relationships")
    if not isinstance(relationships, dict):
        return None
    relationship = relationships.get(name)
    if not isinstance(relationship, dict):
        return None
    return relationship.get("data")


def relationship_id(resource: Mapping[str, Any], name: str) -> str | None:
    """Return the id of a to-one relationship, or None when it is absent or null."""
    data = relationship_data(resource, name)
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


def relationship_ids(resource: Mapping[str, Any], name: str) -> list[str]:
    """Return the ids of a to-many relationship (empty when it is absent)."""
    data = relationship_data(resource, name)
    if not isinstance(data, list):
        return []
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


class Included:
    """The `included` array of a document, indexed by (type, id), validated on demand.

    Joined objects that fail validation are left out of the record that names them (the record
    keeps the related id) and reported once in `invalid`.
    """

    def __init__(self, included: Sequence[Any]) -> None:
        self._raw: dict[tuple[str, str], Mapping[str, Any]] = {}
        for item in included:
            if isinstance(item, dict):
                kind, ident = item.get("type"), item.get("id")
                if isinstance(kind, str) and isinstance(ident, str):
                    self._raw[(kind, ident)] = item
        self._cache: dict[tuple[str, str, tuple[tuple[str, Any], ...]], Any] = {}
        self.invalid: dict[tuple[str, str], InvalidRecord] = {}

    def resolve(
        self, model: type[R], ident: str | None, context: Mapping[str, Any] | None = None
    ) -> R | None:
        """Return the included `model` object with this id, validated, or None."""
        if ident is None:
            return None
        key = (model.resource_type, ident)
        raw = self._raw.get(key)
        if raw is None or key in self.invalid:
            return None
        cache_key = (*key, tuple(sorted(context.items())) if context else ())
        if cache_key in self._cache:
            cached: R = self._cache[cache_key]
            return cached
        try:
            value = model.from_resource(raw, self, context)
        except ValueError as exc:
            self.invalid[key] = InvalidRecord(
                raw=raw,
                reason=f"included {key[0]} {ident}: {describe_invalid(exc)}",
                resource_type=key[0],
                resource_id=ident,
            )
            return None
        self._cache[cache_key] = value
        return value


def build_page(
    model: type[R],
    body: dict[str, Any],
    *,
    url: str,
    method: str = "GET",
    context: Mapping[str, Any] | None = None,
    keep_raw: bool = True,
) -> Page[R]:
    """Validate a collection document into a page of `model` records; the page holds the
    document itself only with `keep_raw`.

    Raises KlaviyoMalformedResponseError if the document has no `data` array.
    """
    data = body.get("data")
    if not isinstance(data, list):
        raise KlaviyoMalformedResponseError(
            f"{method} {urlsplit(url).path} answered a document without a data array",
            method=method,
            url=url,
        )
    included_raw = body.get("included")
    included = Included(included_raw if isinstance(included_raw, list) else [])
    records: list[R] = []
    invalid: list[InvalidRecord] = []
    for item in data:
        if not isinstance(item, dict):
            invalid.append(InvalidRecord(raw={"value": item}, reason="record is not an object"))
            continue
        try:
            records.append(model.from_resource(item, included, context))
        except ValueError as exc:
            ident = item.get("id")
            invalid.append(
                InvalidRecord(
                    raw=item,
                    reason=describe_invalid(exc),
                    resource_type=model.resource_type,
                    resource_id=ident if isinstance(ident, str) else None,
                )
            )
    invalid.extend(included.invalid.values())
    return Page(
        records=records,
        invalid=invalid,
        raw=body if keep_raw else None,
        url=url,
        next_url=next_link(body),
    )


def next_link(body: Mapping[str, Any]) -> str | None:
    """Return `links.next` of a document, or None at the last page."""
    links = body.get("links")
    if not isinstance(links, Mapping):
        return None
    next_url = links.get("next")
    return next_url if isinstance(next_url, str) and next_url else None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int | None]:
    """Return (scheme, host, port) of an absolute URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


@dataclass
class CursorGuard:
    """Refuse a `links.next` that was already followed, or that leaves the API's origin.

    Following a repeated cursor would loop forever; following a link to another host would send
    the API key there.
    """

    origin: tuple[str, str, int | None]
    seen_urls: set[str] = field(default_factory=set)
    seen_cursors: set[str] = field(default_factory=set)

    def visited(self, url: str) -> None:
        """Remember a URL that was fetched (and its cursor), so a link back to it is refused."""
        self.seen_urls.add(url)
        cursor = _cursor(url)
        if cursor is not None:
            self.seen_cursors.add(cursor)

    def check(self, next_url: str, *, method: str = "GET") -> None:
        """Accept `next_url` as the next page to fetch.

        Raises KlaviyoPagingError if it repeats a URL or cursor already fetched, or if it names
        another origin than the API's.
        """
        parts = urlsplit(next_url)
        if origin_of(next_url) != self.origin:
            raise KlaviyoPagingError(
                f"links.next points away from the API origin ({parts.scheme}://{parts.netloc})",
                method=method,
                url=next_url,
            )
        cursor = _cursor(next_url)
        if next_url in self.seen_urls or (cursor is not None and cursor in self.seen_cursors):
            raise KlaviyoPagingError(
                f"{method} {parts.path} returned a links.next that was already followed; "
                "stopping instead of looping",
                method=method,
                url=next_url,
            )


def _cursor(url: str) -> str | None:
    query = parse_qs(urlsplit(url).query)
    cursors = query.get("page[cursor]", []) + query.get("page_cursor", [])
    return cursors[-1] if cursors else None
