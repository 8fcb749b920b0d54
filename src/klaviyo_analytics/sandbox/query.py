"""Read and check one request's query (filter, sort, include, fieldsets) against its operation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from klaviyo_analytics.sandbox.apierror import invalid
from klaviyo_analytics.sandbox.filters import Condition, parse_filter
from klaviyo_analytics.sandbox.operations import Operation, operation

Tree = dict[str, Any]  # a fieldset as nested keys; a leaf (True) keeps the whole value


def _tree(names: list[str]) -> Tree:
    tree: Tree = {}
    for name in names:
        node = tree
        parts = name.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if child is True:
                break
            node = child
        else:
            node[parts[-1]] = True
    return tree


def _select(value: Any, tree: Tree) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for key, sub in tree.items():
        if key in value:
            out[key] = value[key] if sub is True else _select(value[key], sub)
    return out


def _names(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


@dataclass(frozen=True)
class Query:
    """The checked parameters of one request."""

    op: Operation
    conditions: list[Condition]
    sort: str | None
    include: frozenset[str]
    fields: dict[str, Tree]
    additional: dict[str, frozenset[str]]

    def project(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Keep only the asked attributes of a resource object (in place) and return it."""
        tree = self.fields.get(str(doc.get("type")))
        if tree is not None and "attributes" in doc:
            doc["attributes"] = _select(doc["attributes"], tree)
        return doc

    def wants(self, resource: str, name: str) -> bool:
        """Say whether `additional-fields[resource]` asks for `name`."""
        return name in self.additional.get(resource, frozenset())

    def sort_field(self, default: str) -> tuple[str, bool]:
        """Return the sort field (without its sign) and whether it is descending."""
        sort = self.sort or default
        return sort.lstrip("-"), sort.startswith("-")


def read_query(request: Request, operation_id: str, resource: str) -> Query:
    """Parse the request's query against the spec's operation; raise ApiError (400) if invalid."""
    op = operation(operation_id)
    params = request.query_params
    conditions = parse_filter(params.get("filter"), op.filters, resource)
    sort = params.get("sort") or None
    if sort is not None and sort not in op.sorts:
        raise invalid(f"'{sort}' is not a valid sort for the resource '{resource}'.", "sort")
    include: frozenset[str] = frozenset()
    if params.get("include"):
        include = frozenset(_names(params["include"]))
        bad = include - op.includes
        if bad:
            allowed = ", ".join(sorted(op.includes)) or "none"
            raise invalid(f"Invalid include: {', '.join(sorted(bad))}. Allowed: {allowed}.",
                          "include")  # fmt: skip
    fields: dict[str, Tree] = {}
    additional: dict[str, frozenset[str]] = {}
    for key, raw in params.items():
        if key.startswith("fields[") and key.endswith("]"):
            kind = key[7:-1]
            fields[kind] = _tree(_chosen(key, raw, op.fields.get(kind), "field set", "field"))
        elif key.startswith("additional-fields[") and key.endswith("]"):
            kind = key[18:-1]
            extra = _chosen(key, raw, op.additional.get(kind), "parameter", "additional field")
            additional[kind] = frozenset(extra)
    return Query(op, conditions, sort, include, fields, additional)


def _chosen(
    key: str, raw: str, allowed: frozenset[str] | None, parameter: str, field: str
) -> list[str]:
    """Return the names `key=raw` chooses (`fields[kind]` or `additional-fields[kind]`).

    Raises ApiError (400) as Klaviyo words it when the endpoint has no such parameter
    or a name is not one of `allowed`.
    """
    if allowed is None:
        raise invalid(f"'{key}' is not a valid {parameter} for this endpoint.", key)
    names = _names(raw)
    bad_names = sorted(set(names) - allowed)
    if bad_names:
        kind = key[key.index("[") + 1 : -1]
        raise invalid(f"{', '.join(repr(n) for n in bad_names)} is not a valid {field} "
                      f"for the resource '{kind}'.", key)  # fmt: skip
    return names
