"""Clocks: the only place the application reads the current time.

Everything stores and compares UTC; the configured zone is used only to interpret and display.
Tests and the simulator use :class:`VirtualClock` so nothing waits on real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that only moves when told to; time never goes backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        instant = instant.astimezone(UTC)
        if instant > self._now:
            self._now = instant


class OffsetClock:
    """Real time plus a forward offset: the browser simulator's fast-forward on a running bot."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def set(self, instant: datetime) -> None:
        ahead = instant.astimezone(UTC) - self.now()
        if ahead > timedelta():
            self._offset += ahead


class AdvanceableClock(Protocol):
    def now(self) -> datetime: ...

    def set(self, instant: datetime) -> None: ...
