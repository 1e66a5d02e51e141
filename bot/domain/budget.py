"""The send budget: will planned automated messages go out within their windows?

Automated messages of one account go out one at a time, paced, outside quiet hours and within the
daily caps (bot/services/reach.py). A plan that asks for more than that (40 countdowns with the
same deadline: 40 "最后15分钟" steps in 15 minutes) would only show its problem on the day, when
steps expire. :func:`late_slots` replays the account's plan in due order with the slowest pacing,
so the rep hears about it when planning. Pure: no I/O, times in UTC.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.domain.schedule import QuietHours, local_at


@dataclass(frozen=True)
class Slot:
    """One planned automated message: who, when it falls due, the last moment it may go out."""

    key: str
    customer_id: int
    due: datetime
    not_after: datetime
    order: int = 0  # among slots due at once, the dispatcher takes the earlier planned first


@dataclass(frozen=True)
class Limits:
    quiet: QuietHours
    tz: ZoneInfo
    customer_daily_cap: int
    account_daily_cap: int
    gap: timedelta  # the longest pause between two automated sends of the account


@dataclass(frozen=True)
class Sent:
    """What the account already sent today (the caps count it) and when it last sent (pacing)."""

    last_at: datetime | None = None
    day: date | None = None
    account_today: int = 0
    customers_today: Mapping[int, int] | None = None


# a plan never looks further than this many days of deferrals for one message
_MAX_DAYS = 60


def late_slots(slots: Iterable[Slot], limits: Limits, sent: Sent = Sent()) -> list[Slot]:
    """The slots that would not go out by their ``not_after``, earliest due first. A late slot
    sends nothing (it expires), so it takes no room from the ones after it."""
    return [slot for slot, at in replay(slots, limits, sent) if at is None]


def replay(slots: Iterable[Slot], limits: Limits, sent: Sent = Sent()) -> list[tuple[Slot, datetime | None]]:
    """Each slot with the moment it would go out (None: it misses its ``not_after``), in the order
    the dispatcher would take them: a preview's "the last message goes out at" reads this."""
    account: Counter[date] = Counter()
    customers: Counter[tuple[int, date]] = Counter()
    if sent.day is not None:
        account[sent.day] = sent.account_today
        for customer_id, count in (sent.customers_today or {}).items():
            customers[(customer_id, sent.day)] = count
    last = sent.last_at
    timeline: list[tuple[Slot, datetime | None]] = []
    for slot in sorted(slots, key=lambda s: (s.due, s.order, s.key)):
        at = slot.due if last is None else max(slot.due, last + limits.gap)
        for _ in range(_MAX_DAYS):
            at = limits.quiet.next_allowed(at)
            day = at.astimezone(limits.tz).date()
            full = (
                account[day] >= limits.account_daily_cap
                or customers[(slot.customer_id, day)] >= limits.customer_daily_cap
            )
            if not full:
                break
            at = local_at(day + timedelta(days=1), time(0), limits.tz)
        if at > slot.not_after:
            timeline.append((slot, None))
            continue
        day = at.astimezone(limits.tz).date()
        account[day] += 1
        customers[(slot.customer_id, day)] += 1
        last = at
        timeline.append((slot, at))
    return timeline
