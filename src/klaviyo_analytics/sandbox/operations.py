"""Read what each operation accepts (filters, sorts, includes, fieldsets) from Klaviyo's spec.

The sandbox keeps no list of its own: the `x-klaviyo-filters` of an operation and the enums of
its `sort`, `include`, `fields[<type>]` and `additional-fields[<type>]` parameters decide what
is accepted, so the sandbox refuses what Klaviyo refuses and accepts what it accepts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from klaviyo_analytics.sandbox.spec import klaviyo_spec


@dataclass(frozen=True)
class FieldRule:
    """The operators a filter field takes, by value shape, and the kind of its value."""

    single: frozenset[str]
    list: frozenset[str]
    none: frozenset[str]
    kind: str  # "str", "datetime", "timestamp", "bool", "none"

    @property
    def operators(self) -> frozenset[str]:
        """Every operator the field takes, whatever its value."""
        return self.single | self.list | self.none


@dataclass(frozen=True)
class Operation:
    """What one GET operation of the spec accepts."""

    operation_id: str
    path: str
    filters: dict[str, FieldRule]
    sorts: frozenset[str]
    includes: frozenset[str]
    fields: dict[str, frozenset[str]]
    additional: dict[str, frozenset[str]]


def _kind(value: dict[str, Any] | None) -> str:
    if value is None:
        return "none"
    if value.get("format") == "date-time":
        return "datetime"
    return {"number": "timestamp", "integer": "timestamp", "boolean": "bool"}.get(
        str(value.get("type")), "str"
    )


def _enum(parameter: dict[str, Any]) -> frozenset[str]:
    schema = parameter.get("schema", {})
    values = schema.get("enum") or schema.get("items", {}).get("enum") or ()
    return frozenset(str(v) for v in values)


def _operation(path: str, op: dict[str, Any]) -> Operation:
    filters = {
        name: FieldRule(
            frozenset(rule["operators"].get("single", ())),
            frozenset(rule["operators"].get("list", ())),
            frozenset(rule["operators"].get("none", ())),
            _kind(rule.get("value")),
        )
        for name, rule in (op.get("x-klaviyo-filters") or {}).items()
    }
    sorts: frozenset[str] = frozenset()
    includes: frozenset[str] = frozenset()
    fields: dict[str, frozenset[str]] = {}
    additional: dict[str, frozenset[str]] = {}
    for parameter in op.get("parameters", ()):
        name = str(parameter.get("name", ""))
        if name == "sort":
            sorts = _enum(parameter)
        elif name == "include":
            includes = _enum(parameter)
        elif name.startswith("fields["):
            fields[name[7:-1]] = _enum(parameter)
        elif name.startswith("additional-fields["):
            additional[name[18:-1]] = _enum(parameter)
    return Operation(op["operationId"], path, filters, sorts, includes, fields, additional)


@functools.cache
def operations() -> dict[str, Operation]:
    """Return every GET operation of the spec by operation id (read once)."""
    out: dict[str, Operation] = {}
    for path, methods in klaviyo_spec()["paths"].items():
        op = methods.get("get")
        if op is not None:
            out[op["operationId"]] = _operation(path, op)
    return out


def operation(operation_id: str) -> Operation:
    """Return one operation; raise KeyError when the spec has no such GET operation."""
    return operations()[operation_id]


@functools.cache
def paths() -> frozenset[str]:
    """Return every path of the spec (`/api/campaigns/{id}/campaign-messages`, ...)."""
    return frozenset(klaviyo_spec()["paths"])
