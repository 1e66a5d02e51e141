"""Time rules for scheduled messages: deadlines, ladders, quiet hours, DST (New York, London, Shanghai)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.schedule import (
    QuietHours,
    at_local_time_after,
    countdown_left_text,
    local_day_bounds,
    plan_countdown,
    step_time,
    time_left_text,
)

SH, NY, LON = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York"), ZoneInfo("Europe/London")
OFFSETS = ["7d", "3d", "1d", "3h", "1h", "30m", "15m"]
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=SH)  # a Monday


def quiet(tz: ZoneInfo = SH) -> QuietHours:
    return QuietHours(time(21, 30), time(8, 30), tz)


def test_full_ladder_for_a_deadline_next_week() -> None:
    deadline = datetime(2026, 12, 4, 20, 0, tzinfo=SH)
    steps = plan_countdown(deadline, OFFSETS, MONDAY, quiet())
    assert [(s.offset, s.at.astimezone(SH).strftime("%m-%d %H:%M")) for s in steps] == [
        ("7d", "11-27 20:00"),
        ("3d", "12-01 20:00"),
        ("1d", "12-03 20:00"),
        ("3h", "12-04 17:00"),
        ("1h", "12-04 19:00"),
        ("30m", "12-04 19:30"),
        ("15m", "12-04 19:45"),
    ]
    last_day = [s for s in steps if s.at.astimezone(SH).date() == deadline.date()]
    assert len(last_day) == 4, "the default per-customer daily cap of 4 lets this day through"


def test_past_steps_are_skipped_and_nothing_falls_after_the_deadline() -> None:
    deadline = datetime(2026, 11, 24, 20, 0, tzinfo=SH)
    steps = plan_countdown(deadline, OFFSETS, MONDAY, quiet())
    assert [s.offset for s in steps] == ["1d", "3h", "1h", "30m", "15m"]
    assert all(MONDAY < s.at < deadline for s in steps)


def test_quiet_hour_steps_move_earlier_and_collisions_are_dropped() -> None:
    deadline = datetime(
        2026, 11, 30, 23, 59, tzinfo=SH
    )  # late-night deadline: the last steps fall in quiet hours
    steps = {s.offset: s.at.astimezone(SH) for s in plan_countdown(deadline, OFFSETS, MONDAY, quiet())}
    assert steps["3h"].strftime("%H:%M") == "20:59"
    assert steps["1h"].strftime("%H:%M") == "21:29", "moved to the last allowed minute before quiet hours"
    assert "30m" not in steps and "15m" not in steps, "they would collide with the 1h step"
    for at in steps.values():
        assert not quiet().contains(at)


def test_a_step_moved_next_to_its_neighbour_is_dropped() -> None:
    """22:28: the 1h step is at 21:28 and the 30m step (21:58, quiet) would move to 21:29, a
    minute later, and say 最后59分钟: a second message that adds nothing."""
    deadline = datetime(2026, 11, 23, 22, 28, tzinfo=SH)
    steps = [
        (s.offset, s.at.astimezone(SH).strftime("%H:%M"))
        for s in plan_countdown(deadline, OFFSETS, MONDAY, quiet())
    ]
    assert steps == [("3h", "19:28"), ("1h", "21:28")]


@pytest.mark.parametrize(
    ("tz", "deadline", "seven_days_before"),
    [
        # New York springs forward on 2026-03-08: 7 days before 20:00 EDT is 20:00 EST
        (NY, datetime(2026, 3, 12, 20, 0), datetime(2026, 3, 5, 20, 0)),
        # London falls back on 2026-10-25
        (LON, datetime(2026, 10, 28, 20, 0), datetime(2026, 10, 21, 20, 0)),
    ],
)
def test_day_offsets_keep_the_wall_clock_across_dst(
    tz: ZoneInfo, deadline: datetime, seven_days_before: datetime
) -> None:
    at = step_time(deadline.replace(tzinfo=tz), timedelta(days=7), tz)
    assert at.astimezone(tz).replace(tzinfo=None) == seven_days_before
    assert deadline.replace(tzinfo=tz) - at != timedelta(days=7), "an exact 168 hours would be an hour off"


def test_hour_offsets_are_exact_durations_across_dst() -> None:
    deadline = datetime(2026, 3, 8, 4, 0, tzinfo=NY)  # 04:00 EDT, just after the jump
    at = step_time(deadline, timedelta(hours=3), NY)
    assert deadline - at == timedelta(hours=3)
    assert at.astimezone(NY).hour == 0  # 00:00 EST: 3 real hours earlier


def test_time_left_in_natural_chinese() -> None:
    assert time_left_text(timedelta(days=3)) == "还剩3天"
    assert time_left_text(timedelta(hours=3)) == "最后3小时"
    assert time_left_text(timedelta(hours=1)) == "最后1小时"
    assert time_left_text(timedelta(minutes=15)) == "最后15分钟"
    assert time_left_text(timedelta(hours=23, minutes=59)) == "最后23小时", "never more than is left"


@pytest.mark.parametrize(
    ("offset", "left", "text"),
    [
        # sent a little late (pacing, a batch): the step's own wording, never 最后24小时 or 最后59分钟
        ("1d", timedelta(hours=23, minutes=59, seconds=20), "还剩1天"),
        ("24h", timedelta(hours=24), "还剩1天"),
        ("1h", timedelta(minutes=59, seconds=15), "最后1小时"),
        ("60m", timedelta(minutes=58), "最后1小时"),
        ("3h", timedelta(hours=3), "最后3小时"),
        ("15m", timedelta(minutes=14, seconds=1), "最后15分钟"),
        ("7d", timedelta(days=7) - timedelta(hours=1), "还剩7天"),  # across a DST change
        # moved before quiet hours, or sent late after downtime: the time really left, rounded down
        ("1h", timedelta(hours=2, minutes=30), "最后2小时"),
        ("3h", timedelta(hours=2), "最后2小时"),
        ("1d", timedelta(hours=11, minutes=30), "最后11小时"),
        ("30m", timedelta(minutes=12), "最后12分钟"),
        ("30m", timedelta(minutes=59), "最后1小时"),  # a 30m step moved before quiet hours: never 最后59分钟
        ("15m", timedelta(minutes=45), "最后1小时"),
        # too little left to be worth a message (never 最后1分钟)
        ("15m", timedelta(minutes=1), None),
        ("15m", timedelta(minutes=4, seconds=59), None),
        ("1h", timedelta(seconds=-5), None),
    ],
)
def test_a_countdown_step_speaks_of_its_nominal_offset(
    offset: str, left: timedelta, text: str | None
) -> None:
    assert countdown_left_text(offset, left) == text


def test_quiet_hours_across_midnight() -> None:
    q = quiet()
    assert q.contains(datetime(2026, 11, 23, 23, 0, tzinfo=SH)) and q.contains(
        datetime(2026, 11, 24, 7, 0, tzinfo=SH)
    )
    assert not q.contains(datetime(2026, 11, 23, 8, 30, tzinfo=SH))
    assert q.next_allowed(datetime(2026, 11, 23, 23, 0, tzinfo=SH)) == datetime(
        2026, 11, 24, 8, 30, tzinfo=SH
    )
    assert q.next_allowed(datetime(2026, 11, 24, 2, 0, tzinfo=SH)) == datetime(2026, 11, 24, 8, 30, tzinfo=SH)
    assert q.last_allowed_before(datetime(2026, 11, 24, 2, 0, tzinfo=SH)) == datetime(
        2026, 11, 23, 21, 29, tzinfo=SH
    )


def test_quiet_hours_end_on_a_dst_morning() -> None:
    q = QuietHours(time(21, 30), time(8, 30), NY)
    night = datetime(2026, 3, 7, 23, 0, tzinfo=NY)
    assert q.next_allowed(night).astimezone(NY).replace(tzinfo=None) == datetime(2026, 3, 8, 8, 30)


def test_t_plus_n_at_local_time_including_a_nonexistent_time() -> None:
    order = datetime(2026, 11, 23, 15, 0, tzinfo=SH)
    assert at_local_time_after(order, 1, time(10), SH) == datetime(2026, 11, 24, 10, 0, tzinfo=SH)
    # 02:30 does not exist in New York on 2026-03-08: the message goes at the first real minute after
    before_jump = datetime(2026, 3, 7, 12, 0, tzinfo=NY)
    at = at_local_time_after(before_jump, 1, time(2, 30), NY)
    assert at.astimezone(NY).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 30)
    # 01:30 happens twice in New York on 2026-11-01: the first one is used
    repeated = at_local_time_after(datetime(2026, 10, 31, 12, 0, tzinfo=NY), 1, time(1, 30), NY)
    assert repeated == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_local_days_are_23_or_25_hours_across_dst() -> None:
    start, end = local_day_bounds(datetime(2026, 3, 8, 12, 0, tzinfo=NY), NY)
    assert end - start == timedelta(hours=23)
    start, end = local_day_bounds(datetime(2026, 10, 25, 12, 0, tzinfo=LON), LON)
    assert end - start == timedelta(hours=25)
