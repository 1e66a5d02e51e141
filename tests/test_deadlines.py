"""Deadlines as reps type them (issue 16 item 2): relative Chinese forms, dates without a year, times
with 上午/下午/晚上, and the rule that a date without a time means the end of the working day."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.domain.deadlines import DeadlineError, DeadlineRules, parse_deadline, split_deadline
from bot.domain.schedule import QuietHours

SH = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=SH)  # Monday 23 November 2026, 10:00
QUIET = QuietHours(time(21, 30), time(8, 30), SH)
RULES = DeadlineRules(tz=SH, day_end=time(21, 0), quiet=QUIET)


def at(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # forms accepted before issue 16 keep working (a date alone now ends with the working day)
        ("2026-11-30 23:59", at(2026, 11, 30, 23, 59)),
        ("11-30 20:00", at(2026, 11, 30, 20, 0)),
        ("明天 18:00", at(2026, 11, 24, 18, 0)),
        ("周日", at(2026, 11, 29, 21, 0)),
        ("星期三 12:00", at(2026, 11, 25, 12, 0)),
        ("礼拜天", at(2026, 11, 29, 21, 0)),
        ("月底", at(2026, 11, 30, 21, 0)),
        ("+3d", at(2026, 11, 26, 10, 0)),
        ("+90m", at(2026, 11, 23, 11, 30)),
        ("1-15", at(2027, 1, 15, 21, 0)),  # a month-day already past this year means next year
        # what reps type (issue 16)
        ("下周日", at(2026, 12, 6, 21, 0)),  # Sunday of next week (weeks start on Monday)
        ("下个星期三", at(2026, 12, 2, 21, 0)),
        ("这周日", at(2026, 11, 29, 21, 0)),
        ("本周五 18:00", at(2026, 11, 27, 18, 0)),
        ("周日晚上8点", at(2026, 11, 29, 20, 0)),
        ("周日 晚上8点", at(2026, 11, 29, 20, 0)),
        ("周日 晚上 8点", at(2026, 11, 29, 20, 0)),
        ("周日晚上八点半", at(2026, 11, 29, 20, 30)),
        ("明晚8点", at(2026, 11, 24, 20, 0)),
        ("明晚", at(2026, 11, 24, 21, 0)),
        ("今晚8点半", at(2026, 11, 23, 20, 30)),
        ("明天下午3点", at(2026, 11, 24, 15, 0)),
        ("明天中午12点", at(2026, 11, 24, 12, 0)),
        ("后天上午10点15分", at(2026, 11, 25, 10, 15)),
        ("11月30日", at(2026, 11, 30, 21, 0)),
        ("11月30号", at(2026, 11, 30, 21, 0)),
        ("30号", at(2026, 11, 30, 21, 0)),
        ("三十号", at(2026, 11, 30, 21, 0)),
        ("23号", at(2026, 11, 23, 21, 0)),  # today is the 23rd: later today
        ("22号", at(2026, 12, 22, 21, 0)),  # the 22nd has passed: next month's
        ("31号", at(2026, 12, 31, 21, 0)),  # November has no 31st
        ("12.12", at(2026, 12, 12, 21, 0)),
        ("1.15", at(2027, 1, 15, 21, 0)),
        ("12/12 20:00", at(2026, 12, 12, 20, 0)),
        ("12月12日 20点", at(2026, 12, 12, 20, 0)),
        ("12月12日20点", at(2026, 12, 12, 20, 0)),
        ("2027年1月3日", at(2027, 1, 3, 21, 0)),
        ("20:00", at(2026, 11, 23, 20, 0)),  # a time alone is today
        ("晚上8点", at(2026, 11, 23, 20, 0)),
        ("明晚8:00", at(2026, 11, 24, 20, 0)),
        ("今晚12点", at(2026, 11, 23, 23, 59)),  # midnight tonight, as sales posts say it
        ("周日 24:00", at(2026, 11, 29, 23, 59)),
        ("周日晚上8点前", at(2026, 11, 29, 20, 0)),
        ("月底截止", at(2026, 11, 30, 21, 0)),
        ("12.12之前", at(2026, 12, 12, 21, 0)),
        ("１１－３０ ２０：００", at(2026, 11, 30, 20, 0)),  # full-width, as Chinese keyboards type
    ],
)
def test_deadline_forms(text: str, expected: datetime) -> None:
    assert parse_deadline(text, MONDAY, RULES) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("下辈子", "看不懂截止时间「下辈子」"),
        ("截止", "看不懂截止时间「截止」"),
        ("明天 25:00", "看不懂时间「25:00」"),
        ("99:99", "看不懂时间「99:99」"),
        ("周日晚上25点", "看不懂时间「晚上25点」"),
        ("周日晚上", "看不懂时间「晚上」"),
        ("2026-11-01 10:00", "已经过去"),
        ("今天 09:00", "已经过去"),
        ("2026-02-30", "看不懂截止时间"),
        ("2月30日", "看不懂截止时间"),
        ("32号", "看不懂截止时间"),
        ("13.1", "看不懂截止时间"),
        ("+99999999999d", "太远"),
        ("+400d", "太远"),
        ("2028-01-01", "太远"),
    ],
)
def test_bad_deadlines_explain_themselves(text: str, message: str) -> None:
    with pytest.raises(DeadlineError, match=message):
        parse_deadline(text, MONDAY, RULES)


def test_this_weeks_day_already_past_is_an_error_not_next_week() -> None:
    wednesday = datetime(2026, 11, 25, 10, 0, tzinfo=SH)
    with pytest.raises(DeadlineError, match="已经过去"):
        parse_deadline("这周一", wednesday, RULES)
    assert parse_deadline("周一", wednesday, RULES) == at(2026, 11, 30, 21, 0), (
        "a bare weekday is the next one"
    )


def test_a_day_of_month_whose_time_has_passed_today_is_next_months() -> None:
    evening = datetime(2026, 11, 30, 22, 0, tzinfo=SH)
    assert parse_deadline("30号", evening, RULES) == at(2026, 12, 30, 21, 0)
    with pytest.raises(DeadlineError, match="已经过去"):
        parse_deadline("11月30日", evening, RULES)  # a month-day is not moved a whole year


def test_a_date_without_a_time_ends_with_the_reps_working_day() -> None:
    early = DeadlineRules(tz=SH, day_end=time(18, 0), quiet=QUIET)
    assert parse_deadline("周日", MONDAY, early) == at(2026, 11, 29, 18, 0)
    late = DeadlineRules(tz=SH, day_end=time(23, 0), quiet=QUIET)
    assert parse_deadline("周日", MONDAY, late) == at(2026, 11, 29, 21, 29), "never inside quiet hours"


@pytest.mark.parametrize(
    ("text", "deadline", "offer"),
    [
        ("11-30 20:00 双十二限时价", at(2026, 11, 30, 20, 0), "双十二限时价"),
        ("周日 晚上 8点 双十一", at(2026, 11, 29, 20, 0), "双十一"),
        ("12月12日 20点 年终大促", at(2026, 12, 12, 20, 0), "年终大促"),
        ("周日 8点档特惠", at(2026, 11, 29, 21, 0), "8点档特惠"),
        ("下周日", at(2026, 12, 6, 21, 0), ""),
        ("１２．１２　ＶＩＰ专享", at(2026, 12, 12, 21, 0), "ＶＩＰ专享"),  # full-width kept in the name
    ],
)
def test_split_deadline_from_the_offer(text: str, deadline: datetime, offer: str) -> None:
    assert split_deadline(text, MONDAY, RULES) == (deadline, offer)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("周日 99:99 双十一", "看不懂时间「99:99」"),  # a bad time is an error, not part of the offer name
        ("周日 晚上25点 双十一", "看不懂时间「晚上25点」"),
        ("今天 09:00 活动", "已经过去"),
        ("下辈子 活动", "看不懂截止时间「下辈子」"),
    ],
)
def test_split_deadline_never_hides_a_bad_time_in_the_offer(text: str, message: str) -> None:
    with pytest.raises(DeadlineError, match=message):
        split_deadline(text, MONDAY, RULES)
