"""The periodic sweep most services run beside their event-driven work: the
database holds every deadline, and the sweep picks up what no timer in this
process holds (after a restart, or for an instance that died)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler


def start_with_sweep(
    scheduler: AsyncIOScheduler, sweep: Callable[[], Awaitable[None]], seconds: float
) -> None:
    """Start `scheduler` with `sweep` every `seconds`, the first one now; a slow
    sweep is never run twice at once, and missed runs collapse into one."""
    scheduler.start()
    scheduler.add_job(
        sweep,
        "interval",
        seconds=seconds,
        id="sweep",
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
    )


def run_once_at(
    scheduler: AsyncIOScheduler,
    job_id: str,
    when: datetime,
    func: Callable[..., Awaitable[None]],
    *args: Any,
) -> None:
    """A deadline's timer: `func(*args)` at `when`, however late (a timer that
    fires late still acts: the database decides whether the deadline holds).
    Scheduling the same `job_id` again moves it."""
    scheduler.add_job(
        func,
        "date",
        run_date=when,
        args=list(args),
        id=job_id,
        replace_existing=True,
        misfire_grace_time=None,
    )


def stop_scheduler(scheduler: AsyncIOScheduler) -> None:
    if scheduler.running:
        scheduler.shutdown(wait=False)
