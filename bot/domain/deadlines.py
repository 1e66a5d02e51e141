"""Deadlines as reps type them, read in the configured zone against the injected clock's "now".

A small grammar rather than a library: JioNLP reads Chinese dates well but takes a second to
import, prints a banner and needs urllib3 2; dateparser misreads relative Chinese. The rules
reps rely on (weeks start on Monday, a date without a year rolls forward, a date without a time
ends with the working day) would need rewriting around either anyway.

    deadline := "+" N (d|h|m)  |  [day] [period] [clock]      (spaces allowed between the parts)
    day      := 2026-11-30 | 2026年11月30日 | 11-30 | 11月30日 | 11.30 | 11/30 | 30号
              | 今天 | 今晚 | 明天 | 明晚 | 后天 | 月底 | [这|本|下|下个](周|星期|礼拜)一..日
    period   := 凌晨 | 早上 | 上午 | 中午 | 下午 | 傍晚 | 晚上
    clock    := 20:00 | 8点 | 8点半 | 8点15分 | 八点半
    (then optionally 前, 之前, 截止 or 为止: 周日晚上8点前, 月底截止)

A day without a time is due at the end of the rep's working hours (never inside quiet hours). A
past date is an error, except a month-day or day-of-month without a year, which rolls forward.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.limits import MAX_ECHO_CHARS, clip
from bot.domain.schedule import QuietHours, local_at

HORIZON = timedelta(days=366)  # a countdown further out than this is a typo
MAX_WORDS = 3  # "周日 晚上 8点": the most words a deadline takes before the offer name
EXAMPLES = "11-30 20:00、明晚8点、周日晚上8点、下周日、30号、12.12、月底、+3d"

WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
DIGITS = {"零": 0, "〇": 0, "两": 2} | {d: n for n, d in enumerate("一二三四五六七八九", start=1)}
AFTERNOON = ("下午", "傍晚", "晚上", "晚")
MORNING = ("凌晨", "早上", "早晨", "上午")
_NUMBER = r"[0-9零〇一二两三四五六七八九十]{1,3}"

_RELATIVE = re.compile(r"\+(\d+)([dhm])")
_FULL_DATE = re.compile(r"(\d{4})(?:-|/|\.|年)(\d{1,2})(?:-|/|\.|月)(\d{1,2})[日号]?")
_MONTH_DAY = re.compile(rf"({_NUMBER})(?:-|/|\.|月)({_NUMBER})[日号]?")
_DAY_OF_MONTH = re.compile(rf"({_NUMBER})[日号]")
_WEEKDAY = re.compile(r"(这|本|下个?)?(?:周|星期|礼拜)([一二三四五六日天])")
_NAMED_DAYS = {"今天": 0, "今日": 0, "今晚": 0, "明天": 1, "明日": 1, "明晚": 1, "后天": 2}
_EVENING_DAYS = ("今晚", "明晚")
_UNTIL = re.compile(r"(?<=\S)(之前|以前|前|截止|为止)$")  # 周日晚上8点前, 月底截止
_MONTH_END = ("本月底", "这个月底", "月底")
_PERIOD = re.compile(r"(凌晨|早上|早晨|上午|中午|下午|傍晚|晚上|晚)")
_CLOCK = re.compile(rf"(\d{{1,3}})[:：](\d{{1,3}})|({_NUMBER})[点时](半|({_NUMBER})分?)?")
# a word that is meant as a time of day, even when it is not a valid one
_TIME_LIKE = re.compile(rf"\d+(?:[:：]\d+)+|{_PERIOD.pattern}?{_NUMBER}[点时](半|{_NUMBER}分?)?")


class DeadlineError(ValueError):
    """A deadline that cannot be used; the message is the sentence the rep reads."""

    def __init__(self, message: str, *, readable: bool = True) -> None:
        super().__init__(message)
        self.readable = readable  # False: not a deadline at all (it may be the offer's name)


@dataclass(frozen=True)
class DeadlineRules:
    """What a deadline without a time means: the end of the rep's working day, outside quiet hours."""

    tz: ZoneInfo
    day_end: time
    quiet: QuietHours


def parse_deadline(text: str, now: datetime, rules: DeadlineRules) -> datetime:
    """The UTC instant ``text`` names; :class:`DeadlineError` says why it cannot be used."""
    raw = _UNTIL.sub("", unicodedata.normalize("NFKC", text).strip())
    relative = _RELATIVE.fullmatch(raw)
    if relative:
        number, unit = int(relative.group(1)), relative.group(2)
        seconds = number * {"d": 86400, "h": 3600, "m": 60}[unit]
        if seconds > HORIZON.total_seconds():
            raise _too_far(text)
        return _checked(now.astimezone(UTC) + timedelta(seconds=seconds), text, now)
    rest = raw
    today = now.astimezone(rules.tz).date()
    day, of_month, evening, rest = _read_day(rest, today, text)
    rest = rest.lstrip()
    clock_text = rest
    period, rest = _read(_PERIOD, rest)
    evening = evening or (period is not None and period.group(1) in AFTERNOON)
    clock, rest = _read(_CLOCK, rest.lstrip())
    if rest.strip():
        if day is None and period is None and clock is None:
            raise DeadlineError(_unreadable(text), readable=False)
        if _TIME_LIKE.fullmatch(clock_text.strip()):
            raise _bad_clock(clock_text)
        raise DeadlineError(_unreadable(text), readable=False)
    if period is not None and clock is None:
        raise _bad_clock(clock_text)
    at = _clock_time(clock, period.group(1) if period else None, evening, clock_text) if clock else None
    if day is None:
        if at is None:
            raise DeadlineError(_unreadable(text), readable=False)
        day = today
    deadline = _on(day, at, rules)
    if deadline <= now and of_month is not None:  # "30号" later than today's time: the next 30th
        deadline = _on(_next_day_of_month(of_month, day + timedelta(days=1), text), at, rules)
    return _checked(deadline, text, now)


def split_deadline(text: str, now: datetime, rules: DeadlineRules) -> tuple[datetime, str]:
    """The deadline at the start of ``text`` (one to three words) and the offer name after it.

    The longest reading wins; a longer reading that is a deadline with a mistake in it (a bad
    time, a day already past) is reported, never swallowed into the offer name."""
    words = text.split()  # the offer name is kept as typed; parse_deadline normalises its part
    if not words:
        raise DeadlineError(_unreadable(text), readable=False)
    failed: list[DeadlineError] = []
    for count in range(min(MAX_WORDS, len(words)), 0, -1):
        try:
            deadline = parse_deadline(" ".join(words[:count]), now, rules)
        except DeadlineError as exc:
            failed.append(exc)
            continue
        mistaken = [exc for exc in failed if exc.readable]
        if mistaken:
            raise mistaken[-1]
        return deadline, " ".join(words[count:])
    readable = [exc for exc in failed if exc.readable]
    raise readable[-1] if readable else failed[-1]


# -- the parts --------------------------------------------------------------------------------------


def _read(pattern: re.Pattern[str], text: str) -> tuple[re.Match[str] | None, str]:
    match = pattern.match(text)
    return (match, text[match.end() :]) if match else (None, text)


def _read_day(text: str, today: date, original: str) -> tuple[date | None, int | None, bool, str]:
    """(day, the day of month when typed as "30号", whether it names an evening, the rest)."""
    for name, ahead in _NAMED_DAYS.items():
        if text.startswith(name):
            return today + timedelta(days=ahead), None, name in _EVENING_DAYS, text[len(name) :]
    for name in _MONTH_END:
        if text.startswith(name):
            last = calendar.monthrange(today.year, today.month)[1]
            return today.replace(day=last), None, False, text[len(name) :]
    week = _WEEKDAY.match(text)
    if week:
        target = WEEKDAYS[week.group(2)]
        monday = today - timedelta(days=today.weekday())
        if week.group(1) in ("这", "本"):
            day = monday + timedelta(days=target)
        elif week.group(1):
            day = monday + timedelta(days=7 + target)
        else:  # a bare weekday: the next one, today included
            day = today + timedelta(days=(target - today.weekday()) % 7)
        return day, None, False, text[week.end() :]
    full = _FULL_DATE.match(text)
    if full:
        year, month, day_ = (int(g) for g in full.groups())
        return _date(year, month, day_, original), None, False, text[full.end() :]
    month_day = _MONTH_DAY.match(text)
    if month_day:
        month, day_ = _number(month_day.group(1)), _number(month_day.group(2))
        return _next_month_day(month, day_, today, original), None, False, text[month_day.end() :]
    of_month = _DAY_OF_MONTH.match(text)
    if of_month:
        day_ = _number(of_month.group(1))
        return _next_day_of_month(day_, today, original), day_, False, text[of_month.end() :]
    return None, None, False, text


def _next_month_day(month: int, day: int, today: date, original: str) -> date:
    for year in (today.year, today.year + 1):
        candidate = _date(year, month, day, original)
        if candidate >= today:
            return candidate
    raise AssertionError("a month-day recurs every year")  # pragma: no cover


def _next_day_of_month(day: int, today: date, original: str) -> date:
    if not 1 <= day <= 31:
        raise DeadlineError(_unreadable(original))
    year, month = today.year, today.month
    for _ in range(13):
        if day <= calendar.monthrange(year, month)[1] and date(year, month, day) >= today:
            return date(year, month, day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise AssertionError("every day of month 1-31 occurs within a year")  # pragma: no cover


def _date(year: int, month: int, day: int, original: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise DeadlineError(_unreadable(original)) from None


def _clock_time(clock: re.Match[str], period: str | None, evening: bool, typed: str) -> time:
    if clock.group(1) is not None:
        hour, minute = int(clock.group(1)), int(clock.group(2))
    else:
        hour = _number(clock.group(3))
        minute = 30 if clock.group(4) == "半" else _number(clock.group(5)) if clock.group(5) else 0
    if minute > 59 or (period in MORNING and hour >= 12):
        raise _bad_clock(typed)
    if (period == "中午" and 1 <= hour <= 2) or (evening and 1 <= hour <= 11):
        hour += 12  # 中午1点, 晚上8点, 明晚8点
    if (hour, minute) == (24, 0) or (evening and (hour, minute) == (12, 0)):
        return time(23, 59)  # "今晚12点", "24:00": the last minute of the day
    if hour > 23:
        raise _bad_clock(typed)
    return time(hour, minute)


def _number(text: str) -> int:
    """1-3 Arabic digits or a Chinese numeral up to 99 (八, 十五, 三十, 二十一)."""
    if text.isdigit():
        return int(text)
    if "十" not in text:
        return DIGITS[text] if len(text) == 1 and text in DIGITS else 999
    tens, _, ones = text.partition("十")
    if (tens and tens not in DIGITS) or (ones and ones not in DIGITS) or len(text) > 3:
        return 999
    return (DIGITS[tens] if tens else 1) * 10 + (DIGITS[ones] if ones else 0)


def _on(day: date, at: time | None, rules: DeadlineRules) -> datetime:
    if at is not None:
        return local_at(day, at, rules.tz)
    return rules.quiet.last_allowed_before(local_at(day, rules.day_end, rules.tz))


def _checked(deadline: datetime, text: str, now: datetime) -> datetime:
    if deadline <= now:
        raise DeadlineError(f"截止时间「{clip(text, MAX_ECHO_CHARS)}」已经过去了")
    if deadline - now > HORIZON:
        raise _too_far(text)
    return deadline


def _unreadable(text: str) -> str:
    return f"看不懂截止时间「{clip(text, MAX_ECHO_CHARS)}」。可以写：{EXAMPLES}"


def _bad_clock(text: str) -> DeadlineError:
    return DeadlineError(f"看不懂时间「{clip(text.strip(), MAX_ECHO_CHARS)}」，请写成 18:00 或 晚上8点 这样")


def _too_far(text: str) -> DeadlineError:
    return DeadlineError(f"截止时间「{clip(text, MAX_ECHO_CHARS)}」太远了，最多设到一年以内")
