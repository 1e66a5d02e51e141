"""Working hours across time zones and DST transitions."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import WorkingHours
from bot.domain.hours import WorkingCalendar

NY, LONDON, SHANGHAI = ZoneInfo("America/New_York"), ZoneInfo("Europe/London"), ZoneInfo("Asia/Shanghai")


def calendar(
    tz: ZoneInfo, start: time = time(9), end: time = time(18), days: list[int] | None = None
) -> WorkingCalendar:
    return WorkingCalendar(WorkingHours(start=start, end=end, days=days or [1, 2, 3, 4, 5, 6, 7]), tz)


def test_open_and_closed_in_local_time() -> None:
    cal = calendar(SHANGHAI)
    assert cal.is_open(datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI))
    assert not cal.is_open(datetime(2026, 11, 23, 18, 0, tzinfo=SHANGHAI))
    assert not cal.is_open(datetime(2026, 11, 23, 8, 59, tzinfo=SHANGHAI))


@pytest.mark.parametrize(
    ("local", "open_for_an_hour"),
    [
        (datetime(2026, 11, 23, 9, 0), True),
        (datetime(2026, 11, 23, 17, 0), True),  # until 18:00: an hour exactly
        (datetime(2026, 11, 23, 17, 1), False),  # within an hour of the end of the day
        (datetime(2026, 11, 23, 18, 30), False),
        (datetime(2026, 11, 23, 8, 30), False),  # not at work yet
        (datetime(2026, 11, 28, 10, 0), False),  # Saturday: a day off
    ],
)
def test_open_for_an_hour(local: datetime, open_for_an_hour: bool) -> None:
    cal = calendar(SHANGHAI, days=[1, 2, 3, 4, 5])
    assert cal.open_for(local.replace(tzinfo=SHANGHAI), timedelta(hours=1)) is open_for_an_hour


@pytest.mark.parametrize(
    ("tz", "evening", "expected_utc_hour"),
    [
        # New York springs forward on 2026-03-08: 09:00 EDT next morning is 13:00 UTC (was 14:00 in EST)
        (NY, datetime(2026, 3, 7, 20, 0), 13),
        # ...and falls back on 2026-11-01: 09:00 EST is 14:00 UTC
        (NY, datetime(2026, 10, 31, 20, 0), 14),
        # London: BST starts 2026-03-29 (09:00 BST = 08:00 UTC), ends 2026-10-25 (09:00 GMT = 09:00 UTC)
        (LONDON, datetime(2026, 3, 28, 20, 0), 8),
        (LONDON, datetime(2026, 10, 24, 20, 0), 9),
    ],
)
def test_next_opening_across_dst(tz: ZoneInfo, evening: datetime, expected_utc_hour: int) -> None:
    cal = calendar(tz)
    opening = cal.next_open(evening.replace(tzinfo=tz))
    assert opening.astimezone(tz).time() == time(9, 0)
    assert opening.utcoffset() is not None and opening.hour == expected_utc_hour
    assert cal.back_at_text(evening.replace(tzinfo=tz)) == "明天 09:00"


def test_opening_inside_a_dst_gap_moves_past_it() -> None:
    """02:30 does not exist in New York on 2026-03-08; the rep is back at the first real instant after."""
    cal = calendar(NY, start=time(2, 30), end=time(5))
    opening = cal.next_open(datetime(2026, 3, 8, 1, 0, tzinfo=NY))
    assert opening.astimezone(NY).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 30)


def test_weekend_gap_and_descriptions() -> None:
    cal = calendar(SHANGHAI, days=[1, 2, 3, 4, 5])
    friday_evening = datetime(2026, 11, 27, 19, 0, tzinfo=SHANGHAI)
    assert cal.back_at_text(friday_evening) == "周一 09:00"
    assert cal.back_at_text(datetime(2026, 11, 23, 7, 0, tzinfo=SHANGHAI)) == "今天 09:00"
    assert cal.describe() == "周一至周五 09:00-18:00"
    assert calendar(SHANGHAI).describe() == "每天 09:00-18:00"
    assert calendar(SHANGHAI, days=[6, 7]).describe() == "周六、周日 09:00-18:00"
