"""Working hours in the configured time zone: are we open, and when are we back?"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config import WorkingHours

WEEKDAYS = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time on a day, as an aware UTC instant. A time skipped by a DST jump maps to the
    first valid instant after it; a repeated time maps to its first occurrence (fold=0)."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz, fold=0)
    roundtrip = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if roundtrip != naive:  # nonexistent local time (spring forward): move past the gap
        aware = (naive + timedelta(hours=1)).replace(tzinfo=tz)
    return aware.astimezone(UTC)


class WorkingCalendar:
    def __init__(self, hours: WorkingHours, tz: ZoneInfo) -> None:
        if hours.start >= hours.end:
            raise ValueError("working hours must start before they end on the same day")
        self.hours = hours
        self.tz = tz

    def is_open(self, instant: datetime) -> bool:
        local = instant.astimezone(self.tz)
        return local.isoweekday() in self.hours.days and self.hours.start <= local.time() < self.hours.end

    def open_for(self, instant: datetime, span: timedelta) -> bool:
        """Whether the rep is at work from ``instant`` for at least ``span``: a message that
        promises "I'll arrange it right away" may only go out then."""
        if not self.is_open(instant):
            return False
        closing = local_instant(instant.astimezone(self.tz).date(), self.hours.end, self.tz)
        return instant + span <= closing

    def next_open(self, instant: datetime) -> datetime:
        """The next moment the rep is at work (``instant`` itself when open)."""
        if self.is_open(instant):
            return instant
        local = instant.astimezone(self.tz)
        for offset in range(0, 8):
            day = local.date() + timedelta(days=offset)
            if day.isoweekday() not in self.hours.days:
                continue
            opening = local_instant(day, self.hours.start, self.tz)
            if opening > instant:
                return opening
        raise AssertionError("working hours name at least one weekday")  # pragma: no cover

    def describe(self) -> str:
        """E.g. '每天 09:00-21:00' or '周一至周五 09:00-18:00'."""
        span = f"{self.hours.start:%H:%M}-{self.hours.end:%H:%M}"
        days = sorted(set(self.hours.days))
        if days == list(range(1, 8)):
            label = "每天"
        elif days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
            label = f"{WEEKDAYS[days[0] - 1]}至{WEEKDAYS[days[-1] - 1]}"
        else:
            label = "、".join(WEEKDAYS[d - 1] for d in days)
        return f"{label} {span}"

    def back_at_text(self, instant: datetime) -> str:
        """When the rep is next at work, in words relative to ``instant``: '今天 09:00', '明天 09:00',
        '周一 09:00' or '11月30日 09:00'."""
        opening = self.next_open(instant).astimezone(self.tz)
        days = (opening.date() - instant.astimezone(self.tz).date()).days
        clock = f"{opening:%H:%M}"
        if days == 0:
            return f"今天 {clock}"
        if days == 1:
            return f"明天 {clock}"
        if days < 7:
            return f"{WEEKDAYS[opening.weekday()]} {clock}"
        return f"{opening.month}月{opening.day}日 {clock}"
