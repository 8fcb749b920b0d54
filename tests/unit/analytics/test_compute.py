"""The analysis workers: fits run in other processes, and a dead worker costs one answer only."""

from __future__ import annotations

import os

import pytest

from klaviyo_analytics.analytics.compute import Workers
from klaviyo_analytics.analytics.errors import AnalysisUnavailableError, SeriesTooShortError


def pid_and_niceness(scale: int, *, plus: int = 0) -> tuple[int, int, int]:
    return os.getpid(), os.nice(0), scale * 2 + plus


def die() -> None:
    os._exit(3)


def refuse() -> None:
    raise SeriesTooShortError("3 days; needs 14")


async def test_fits_run_in_lower_priority_worker_processes_with_their_arguments() -> None:
    async with Workers(1, warm=True) as workers:
        pid, niceness, value = await workers(pid_and_niceness, 20, plus=1)
    assert pid != os.getpid()
    assert niceness > os.nice(0)
    assert value == 41


async def test_a_fits_own_error_reaches_the_caller_as_itself() -> None:
    async with Workers(1) as workers:
        with pytest.raises(SeriesTooShortError, match="needs 14"):
            await workers(refuse)
        assert (await workers(pid_and_niceness, 1))[2] == 2


async def test_a_worker_that_dies_fails_its_fit_and_the_next_fit_gets_a_new_worker() -> None:
    async with Workers(1) as workers:
        first, _, _ = await workers(pid_and_niceness, 1)
        with pytest.raises(AnalysisUnavailableError, match="try again"):
            await workers(die)
        second, _, value = await workers(pid_and_niceness, 2)
    assert second != first and value == 4
