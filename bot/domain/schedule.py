"""Time rules for scheduled messages, in the configured zone, correct across DST.

* Quiet hours: no automated message inside them (e.g. 21:30-08:30 local).
* Deadlines typed by reps: ``2026-11-30 23:59``, ``11-30 20:00``, ``明天 18:00``, ``周日``, ``月底``, ``+3d``.
* Countdown ladders: steps at offsets before a deadline; day offsets keep the wall-clock time
  (7 days before 20:00 is 20:00), hour/minute offsets are exact durations.
* "T+N at 10:00" local times for aftercare and follow-ups.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.hours import local_instant

WEEKDAY_NAMES = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
DEFAULT_DEADLINE_TIME = time(23, 59)
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
    minute (dropped if that collides with a neighbour or is already past), none after the deadline."""
    steps: list[LadderStep] = []
    for name in sorted(offsets, key=parse_offset, reverse=True):  # earliest step first
        at = step_time(deadline, parse_offset(name), quiet.tz)
        at = quiet.last_allowed_before(at)
        if at <= now or at >= deadline:
            continue
        if steps and at <= steps[-1].at:
            continue  # moved onto or before the previous step: drop it
        steps.append(LadderStep(name, at))
    return steps


def time_left_text(left: timedelta) -> str:
    """Natural Chinese for the time until a deadline: 还剩7天, 还剩1天, 最后3小时, 最后1小时, 最后30分钟."""
    minutes = max(1, round(left.total_seconds() / 60))
    if minutes >= 24 * 60:
        return f"还剩{round(minutes / (24 * 60))}天"
    if minutes >= 60:
        return f"最后{round(minutes / 60)}小时"
    return f"最后{minutes}分钟"


def parse_deadline(text: str, now: datetime, tz: ZoneInfo) -> datetime:
    """A deadline as reps type it, in the configured zone; raises ValueError with the accepted forms."""
    raw = text.strip()
    local_now = now.astimezone(tz)
    relative = re.fullmatch(r"\+(\d+)([dhm])", raw)
    if relative:
        return now.astimezone(UTC) + parse_offset(f"{relative.group(1)}{relative.group(2)}")
    day_part, _, time_part = raw.partition(" ")
    at = DEFAULT_DEADLINE_TIME
    if time_part:
        at = _parse_clock(time_part)
    day = _parse_day(day_part, local_now.date())
    if day is None:
        raise ValueError(
            f"看不懂截止时间「{text}」。可以写：2026-11-30 23:59、11-30 20:00、明天 18:00、周日、月底、+3d"
        )
    result = local_at(day, at, tz)
    if result <= now:
        raise ValueError(f"截止时间「{text}」已经过去了")
    return result


def _parse_clock(text: str) -> time:
    match = re.fullmatch(r"(\d{1,2})[:：](\d{2})", text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"看不懂时间「{text}」，请写成 18:00 这样")
    return time(int(match.group(1)), int(match.group(2)))


def _parse_day(text: str, today: date) -> date | None:
    if text in ("今天", "今晚"):
        return today
    if text == "明天":
        return today + timedelta(days=1)
    if text == "后天":
        return today + timedelta(days=2)
    if text in ("月底", "本月底"):
        return today.replace(day=calendar.monthrange(today.year, today.month)[1])
    week = re.fullmatch(r"(?:周|星期|礼拜)([一二三四五六日天])", text)
    if week:
        ahead = (WEEKDAY_NAMES[week.group(1)] - today.weekday()) % 7
        return today + timedelta(days=ahead)
    full = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
    short = re.fullmatch(r"(\d{1,2})-(\d{1,2})", text)
    try:
        if full:
            return date(int(full.group(1)), int(full.group(2)), int(full.group(3)))
        if short:
            candidate = date(today.year, int(short.group(1)), int(short.group(2)))
            return candidate if candidate >= today else candidate.replace(year=today.year + 1)
    except ValueError:
        return None
    return None


def at_local_time_after(start: datetime, days: int, at: time, tz: ZoneInfo) -> datetime:
    """T+``days`` at local time ``at`` (T+1 10:00 is 10:00 on the next local day)."""
    return local_at(start.astimezone(tz).date() + timedelta(days=days), at, tz)


def local_day_bounds(instant: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The local day containing ``instant`` as [start, end) in UTC (23 or 25 hours across DST)."""
    day = instant.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end
