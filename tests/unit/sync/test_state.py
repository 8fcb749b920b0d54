"""Window planning: resumes, new ranges, and the rule that cursors never pass stored events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from klaviyo_analytics.sync.state import Window, plan, removable, split_evenly, split_range

DAY = timedelta(days=1)
T = datetime(2026, 3, 1, tzinfo=UTC)


def test_first_run_cuts_the_range_into_day_windows_aligned_to_midnight() -> None:
    to_write, to_run = plan(
        [], since=T + timedelta(hours=6), until=T + timedelta(days=2, hours=3), size=DAY
    )
    assert [(w.start, w.end) for w in to_run] == [
        (T + timedelta(hours=6), T + DAY),
        (T + DAY, T + 2 * DAY),
        (T + 2 * DAY, T + timedelta(days=2, hours=3)),
    ]
    assert to_write == to_run


def test_unfinished_windows_are_resumed_from_their_cursor_and_only_new_time_is_added() -> None:
    existing = [
        Window(T, T + DAY, cursor=T + timedelta(hours=5)),
        Window(T + DAY, T + 2 * DAY, cursor=T + timedelta(days=1, hours=9), done=True),
    ]
    _, to_run = plan(existing, since=T, until=T + timedelta(days=2, hours=12), size=DAY)
    assert to_run[0].resume_from == T + timedelta(hours=5)
    assert [(w.start, w.end) for w in to_run[1:]] == [
        (T + 2 * DAY, T + timedelta(days=2, hours=12))
    ]


def test_next_run_starts_at_the_newest_stored_event_not_at_an_empty_windows_end() -> None:
    # The last window reached into a time with no events yet; events may still appear there.
    existing = [
        Window(T, T + DAY, cursor=T + timedelta(hours=20), done=True),
        Window(T + DAY, T + 2 * DAY, cursor=None, done=True),
    ]
    _, to_run = plan(existing, since=T, until=T + 3 * DAY, size=DAY)
    assert to_run[0].start == T + timedelta(hours=20)
    assert to_run[-1].end == T + 3 * DAY


def test_nothing_stored_yet_rereads_from_the_earliest_window() -> None:
    existing = [Window(T, T + DAY, done=True)]
    _, to_run = plan(existing, since=T, until=T + 2 * DAY, size=DAY)
    assert to_run[0].start == T and to_run[0].cursor is None


def test_removable_keeps_unfinished_windows_and_the_one_holding_the_newest_event() -> None:
    windows = [
        Window(T, T + DAY, cursor=T + timedelta(hours=3), done=True),
        Window(T + DAY, T + 2 * DAY, cursor=T + timedelta(days=1, hours=4), done=True),
        Window(T + 2 * DAY, T + 3 * DAY, done=True),
        Window(T + 3 * DAY, T + 4 * DAY, cursor=None, done=False),
    ]
    assert removable(windows) == [windows[0].key, windows[2].key]


def test_splitting_covers_the_range_exactly_without_overlap() -> None:
    pieces = split_evenly(T, T + timedelta(hours=7, seconds=13), 4)
    assert pieces[0][0] == T and pieces[-1][1] == T + timedelta(hours=7, seconds=13)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    assert split_range(T, T, DAY) == []


def test_a_window_round_trips_through_its_state_row() -> None:
    w = Window(T, T + DAY, cursor=T + timedelta(hours=2), done=False).stored(
        T + timedelta(hours=1), T + timedelta(hours=3)
    )
    assert Window.from_state(w.to_state()) == w
    assert w.cursor == T + timedelta(hours=3)
