"""Lists, segments, signup forms and email templates: the audience side of an account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klaviyo_analytics.db.repos.base import Repository


@dataclass(frozen=True, slots=True)
class KlaviyoList:
    """A static list of profiles."""

    id: str
    name: str
    opt_in_process: str | None = None
    profile_count: int | None = None
    created: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A dynamic segment of profiles."""

    id: str
    name: str
    definition: dict[str, Any] | None = None
    is_active: bool | None = None
    is_processing: bool | None = None
    is_starred: bool | None = None
    profile_count: int | None = None
    created: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class Form:
    """A signup form."""

    id: str
    name: str
    status: str | None = None
    ab_test: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ListRepository(Repository[KlaviyoList]):
    """Lists."""

    def __init__(self) -> None:
        super().__init__("klaviyo_lists", KlaviyoList, ("id",))


class SegmentRepository(Repository[Segment]):
    """Segments."""

    def __init__(self) -> None:
        super().__init__("klaviyo_segments", Segment, ("id",))


class FormRepository(Repository[Form]):
    """Signup forms."""

    def __init__(self) -> None:
        super().__init__("klaviyo_forms", Form, ("id",))


@dataclass(frozen=True, slots=True)
class Template:
    """An email template."""

    id: str
    name: str
    editor_type: str | None = None
    html: str | None = None
    text: str | None = None
    created: datetime | None = None
    updated: datetime | None = None


class TemplateRepository(Repository[Template]):
    """Email templates."""

    def __init__(self) -> None:
        super().__init__("klaviyo_templates", Template, ("id",))
