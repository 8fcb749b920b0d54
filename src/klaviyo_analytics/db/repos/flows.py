"""Flows with their actions and messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klaviyo_analytics.db.repos.base import Repository


@dataclass(frozen=True, slots=True)
class Flow:
    """An automated flow (welcome series, abandoned cart, ...)."""

    id: str
    name: str
    status: str | None = None
    archived: bool = False
    trigger_type: str | None = None
    created: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class FlowAction:
    """One step of a flow (send email, time delay, ...)."""

    id: str
    flow_id: str
    action_type: str | None = None
    status: str | None = None
    settings: dict[str, Any] | None = None
    created: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class FlowMessage:
    """A message sent by a flow action."""

    id: str
    flow_action_id: str
    flow_id: str
    name: str | None = None
    channel: str | None = None
    content: dict[str, Any] | None = None
    created: datetime | None = None
    updated: datetime | None = None


class FlowRepository(Repository[Flow]):
    """Flows."""

    def __init__(self) -> None:
        super().__init__("klaviyo_flows", Flow, ("id",))


class FlowActionRepository(Repository[FlowAction]):
    """Flow actions."""

    def __init__(self) -> None:
        super().__init__("klaviyo_flow_actions", FlowAction, ("id",))


class FlowMessageRepository(Repository[FlowMessage]):
    """Flow messages."""

    def __init__(self) -> None:
        super().__init__("klaviyo_flow_messages", FlowMessage, ("id",))
