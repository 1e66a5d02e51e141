"""One wrapper around APScheduler: owns the time zone and the job lifecycle; job ids come from
domain keys so re-scheduling the same thing replaces it instead of duplicating it.

The durable state lives in the outbox table; these jobs only wake the dispatcher.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

DISPATCH_POLL = "dispatch:poll"
DISPATCH_WAKE = "dispatch:wake"
CLUSTER_HEARTBEAT = "cluster:heartbeat"


def _instances(overlapping: bool) -> int:
    """APScheduler's ``max_instances``. A job whose function handles being called while it runs
    (``overlapping``, like the dispatcher's wake-ups) is never skipped; others run one at a time,
    and APScheduler skips a run due meanwhile (with a warning)."""
    return sys.maxsize if overlapping else 1


class Timers:
    def __init__(self, tz: ZoneInfo) -> None:
        self.scheduler = AsyncIOScheduler(timezone=tz)

    def start(self) -> None:
        self.scheduler.start()

    def pause(self) -> None:
        """No job starts from now on; the ones running go on (:meth:`shutdown` cancels them:
        APScheduler's asyncio executor cancels its jobs' tasks)."""
        if self.scheduler.running:
            self.scheduler.pause()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def every(
        self, job_id: str, seconds: float, func: Callable[[], Awaitable[object]], *, overlapping: bool = False
    ) -> None:
        self.scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            id=job_id,
            replace_existing=True,
            max_instances=_instances(overlapping),
            coalesce=True,
        )

    def daily(
        self, job_id: str, at: time, func: Callable[[], Awaitable[object]], *, overlapping: bool = False
    ) -> None:
        """Run ``func`` every day at local time ``at`` (the scheduler's zone)."""
        self.scheduler.add_job(
            func,
            "cron",
            hour=at.hour,
            minute=at.minute,
            id=job_id,
            replace_existing=True,
            max_instances=_instances(overlapping),
            coalesce=True,
        )

    def at(
        self, job_id: str, when: datetime, func: Callable[[], Awaitable[object]], *, overlapping: bool = False
    ) -> None:
        """Run ``func`` once at ``when``; an earlier pending wake-up under the same id is kept."""
        existing = self.scheduler.get_job(job_id)
        # a job added before the scheduler starts is "tentative" and has no next_run_time yet
        next_run = getattr(existing, "next_run_time", None)
        if next_run is not None and next_run <= when:
            return
        self.scheduler.add_job(
            func,
            "date",
            run_date=when,
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,
            max_instances=_instances(overlapping),
        )
