"""Time rules for scheduled messages, in the configured zone, correct across DST.

* Quiet hours: no automated message inside them (e.g. 21:30-08:30 local).
* Deadlines typed by reps: see :mod:`bot.domain.deadlines`.
* Countdown ladders: steps at offsets before a deadline; day offsets keep the wall-clock time
  (7 days before 20:00 is 20:00), hour/minute offsets are exact durations; each step speaks of its
  nominal offset (还剩1天, 最后1小时).
* "T+N at 10:00" local times for aftercare and follow-ups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.hours import local_instant

UNIT_NAMES = {"d": "天", "h": "小时", "m": "分钟"}
MIN_LEFT = timedelta(minutes=5)  # a countdown step with less left than this is not sent
_OFFSET = re.compile(r"^(\d+)([dhm])$")


def local_at(day: date, at: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time on a local day as UTC; a time skipped by DST moves past the gap, a
    repeated time takes its first occurrence."""
    return local_instant(day, at, tz)


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    def contains(self, instant: datetime) -> bool:
        local = instant.astimezone(self.tz).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, instant: datetime) -> datetime:
        """``instant`` if outside quiet hours, else when they end."""
        if not self.contains(instant):
            return instant
        local = instant.astimezone(self.tz)
        day = local.date() if local.time() < self.end else local.date() + timedelta(days=1)
        return local_at(day, self.end, self.tz)

    def last_allowed_before(self, instant: datetime) -> datetime:
        """``instant`` if outside quiet hours, else the last minute before they began."""
        if not self.contains(instant):
            return instant
        local = instant.astimezone(self.tz)
        day = local.date() if local.time() >= self.start else local.date() - timedelta(days=1)
        return local_at(day, self.start, self.tz) - timedelta(minutes=1)


def parse_offset(text: str) -> timedelta:
    match = _OFFSET.match(text.strip())
    if not match:
        raise ValueError(f"bad offset {text!r} (expected e.g. 7d, 3h, 30m)")
    number, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=number), "h": timedelta(hours=number), "m": timedelta(minutes=number)}[unit]


def step_time(deadline: datetime, offset: timedelta, tz: ZoneInfo) -> datetime:
    """When a step ``offset`` before ``deadline`` falls: whole days keep the local wall-clock time."""
    if offset.seconds == 0 and offset.microseconds == 0 and offset.days:
        local = deadline.astimezone(tz)
        return local_at(local.date() - timedelta(days=offset.days), local.time(), tz)
    # in UTC: Python subtracts wall-clock time when both sides share a local tzinfo
    return deadline.astimezone(UTC) - offset


@dataclass(frozen=True)
class LadderStep:
    offset: str  # as configured, e.g. "3h": the step's stable name
    at: datetime  # UTC


def plan_countdown(
    deadline: datetime, offsets: list[str], now: datetime, quiet: QuietHours
) -> list[LadderStep]:
    """Steps before ``deadline``: past ones skipped, quiet-hour ones moved earlier to the last allowed
    minute (dropped if that lands on or within half its offset of the previous step, or is already
    past), none after the deadline."""
    steps: list[LadderStep] = []
    for name in sorted(offsets, key=parse_offset, reverse=True):  # earliest step first
        nominal = step_time(deadline, parse_offset(name), quiet.tz)
        at = quiet.last_allowed_before(nominal)
        if at <= now or at >= deadline:
            continue
        if steps and at <= steps[-1].at:
            continue  # moved onto or before the previous step: drop it
        if steps and at != nominal and at - steps[-1].at < parse_offset(name) / 2:
            continue  # moved next to the previous step (21:28, then 21:29): a second message adds nothing
        steps.append(LadderStep(name, at))
    return steps


def time_left_text(left: timedelta) -> str:
    """Natural Chinese for the time really left, rounded down so it never promises more time than
    there is: 还剩3天, 最后23小时, 最后30分钟."""
    minutes = max(1, int(left.total_seconds() // 60))
    if minutes >= 24 * 60:
        return f"还剩{minutes // (24 * 60)}天"
    if minutes >= 45:  # 最后59分钟 reads like a glitch; with under an hour left it is the last hour
        return f"最后{max(1, minutes // 60)}小时"
    return f"最后{minutes}分钟"


def offset_text(offset: timedelta) -> str:
    """A step's nominal offset in words: 1d is 还剩1天 (24h too), 1h is 最后1小时, 30m 最后30分钟."""
    minutes = int(offset.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"还剩{minutes // (24 * 60)}天"
    if minutes % 60 == 0:
        return f"最后{minutes // 60}小时"
    return f"最后{minutes}分钟"


def offset_label(offset: str) -> str:
    """A configured offset as reps read it: 7d is 提前7天, 3h 提前3小时, 30m 提前30分钟."""
    return f"提前{offset[:-1]}{UNIT_NAMES[offset[-1]]}"


def countdown_left_text(offset: str, left: timedelta) -> str | None:
    """What a countdown step says about the time left when it goes out at ``left`` before the
    deadline: its nominal offset when roughly on time (pacing makes "1h" go out at 59 minutes, and
    "最后59分钟" reads like a glitch), else the time really left, rounded down (a step moved before
    quiet hours, or sent late after downtime). None when too little is left to be worth a message."""
    nominal = parse_offset(offset)
    if left < min(MIN_LEFT, nominal / 2):
        return None
    if nominal * 3 / 4 <= left <= nominal * 5 / 4:
        return offset_text(nominal)
    return time_left_text(left)


def at_local_time_after(start: datetime, days: int, at: time, tz: ZoneInfo) -> datetime:
    """T+``days`` at local time ``at`` (T+1 10:00 is 10:00 on the next local day)."""
    return local_at(start.astimezone(tz).date() + timedelta(days=days), at, tz)


def local_day_bounds(instant: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The local day containing ``instant`` as [start, end) in UTC (23 or 25 hours across DST)."""
    day = instant.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end
