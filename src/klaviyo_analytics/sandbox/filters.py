"""Parse Klaviyo's `filter` syntax (`and(equals(metric_id,"x"),greater-than(datetime,...))`).

A comma-separated list of expressions at the top level is their conjunction, as Klaviyo reads
it (`greater-or-equal(datetime,X),less-or-equal(datetime,Y)`). Which fields and operators an
endpoint takes comes from the spec (`operations.FieldRule`), never from a list kept here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from klaviyo_analytics.sandbox.apierror import ApiError, invalid
from klaviyo_analytics.sandbox.operations import FieldRule


@dataclass(frozen=True)
class Condition:
    """One comparison of a filter: `op(field, value)`."""

    field: str
    op: str
    value: Any


class _Parser:
    def __init__(self, text: str, parameter: str) -> None:
        self.text = text
        self.pos = 0
        self.parameter = parameter

    def fail(self, detail: str) -> ApiError:
        return invalid(f"Invalid filter provided: {detail}", self.parameter)

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r} at position {self.pos} of {self.text!r}")
        self.pos += 1

    def name(self) -> str:
        self.peek()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum()
                                             or self.text[self.pos] in "-_.$"):  # fmt: skip
            self.pos += 1
        if start == self.pos:
            raise self.fail(f"expected a name at position {start} of {self.text!r}")
        return self.text[start : self.pos]

    def value(self) -> Any:
        char = self.peek()
        if char in "'\"":
            end = self.text.find(char, self.pos + 1)
            if end < 0:
                raise self.fail(f"unterminated string in {self.text!r}")
            raw = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return raw
        if char == "[":
            self.pos += 1
            items: list[Any] = []
            if self.peek() == "]":
                self.pos += 1
                return items
            while True:
                items.append(self.value())
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.expect("]")
                return items
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",)]":
            self.pos += 1
        raw = self.text[start : self.pos].strip()
        if not raw:
            raise self.fail(f"missing value at position {start} of {self.text!r}")
        return _Bare(raw)

    def expression(self, out: list[Condition]) -> None:
        op = self.name()
        self.expect("(")
        if op == "and":
            while True:
                self.expression(out)
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.expect(")")
                return
        if op in ("or", "not"):
            raise self.fail(f"operator {op!r} is not supported")
        field = self.name()
        value: Any = None
        if self.peek() == ",":
            self.pos += 1
            value = self.value()
        self.expect(")")
        out.append(Condition(field, op, value))


@dataclass(frozen=True)
class _Bare:
    """An unquoted literal (datetime, number, boolean)."""

    raw: str


def parse_datetime(raw: str, parameter: str = "filter") -> int:
    """Parse an ISO 8601 datetime (naive means UTC) to unix seconds; raise ApiError if bad."""
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{raw!r} is not a valid datetime", parameter) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse_filter(text: str | None, allowed: dict[str, FieldRule], resource: str) -> list[Condition]:
    """Parse and check a filter against an endpoint's fields; raise ApiError (400) if invalid."""
    if text is None or text == "":
        return []
    parser = _Parser(text, "filter")
    conditions: list[Condition] = []
    parser.expression(conditions)
    while parser.peek() == ",":
        parser.pos += 1
        parser.expression(conditions)
    if parser.peek():
        raise parser.fail(f"unexpected text after position {parser.pos} of {text!r}")
    checked = []
    for cond in conditions:
        rule = allowed.get(cond.field)
        if rule is None:
            raise invalid(f"'{cond.field}' is not a valid field for the resource '{resource}'.",
                          "filter")  # fmt: skip
        if cond.op not in rule.operators:
            raise invalid(
                f"'{cond.op}' is not a valid operator for the field '{cond.field}' "
                f"of the resource '{resource}'.",
                "filter",
            )
        checked.append(Condition(cond.field, cond.op, _coerce(cond, rule)))
    return checked


def _coerce(cond: Condition, rule: FieldRule) -> Any:
    value = cond.value
    if cond.op in rule.none and not (cond.op in rule.single or cond.op in rule.list):
        if value is not None:
            raise invalid(f"'{cond.op}' takes only a field", "filter")
        return None
    if value is None:
        raise invalid(f"'{cond.op}({cond.field})' needs a value", "filter")
    if isinstance(value, list):
        if cond.op not in rule.list:
            raise invalid(f"'{cond.op}' on '{cond.field}' does not take a list", "filter")
        return [_scalar(cond, v, rule.kind) for v in value]
    if cond.op not in rule.single:
        raise invalid(f"'{cond.op}' on '{cond.field}' needs a list", "filter")
    return _scalar(cond, value, rule.kind)


def _scalar(cond: Condition, value: Any, kind: str) -> Any:
    raw = value.raw if isinstance(value, _Bare) else value
    if kind == "datetime":
        return parse_datetime(raw)
    if kind == "timestamp":
        if raw.lstrip("-").isdigit():
            return int(raw)
        return parse_datetime(raw)
    if kind == "bool":
        if raw not in ("true", "false"):
            raise invalid(f"'{raw}' is not a boolean", "filter")
        return raw == "true"
    return raw


def time_range(
    conditions: list[Condition], fields: tuple[str, ...]
) -> tuple[int | None, int | None]:
    """Fold range conditions on `fields` into a half-open `[lo, hi)` range in unix seconds."""
    lo: int | None = None
    hi: int | None = None
    for cond in conditions:
        if cond.field not in fields:
            continue
        v = int(cond.value)
        if cond.op in ("greater-or-equal", "greater-than"):
            bound = v if cond.op == "greater-or-equal" else v + 1
            lo = bound if lo is None else max(lo, bound)
        elif cond.op in ("less-than", "less-or-equal"):
            bound = v if cond.op == "less-than" else v + 1
            hi = bound if hi is None else min(hi, bound)
        elif cond.op == "equals":
            lo = v if lo is None else max(lo, v)
            hi = v + 1 if hi is None else min(hi, v + 1)
    return lo, hi
