"""A customer's lifecycle state (new, growing, mature, dormant, lost), derived from activity and stage.

Pure: takes ``now`` and the facts, no I/O. Silence is counted in local calendar days of the
configured zone (a customer who last wrote on the 3rd is silent 7 days from local midnight of the
10th, whatever DST did in between), so the daily sweep moves everyone on the same day a rep would
count on a calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.domain.schedule import local_at


class Lifecycle(StrEnum):
    NEW = "new"  # just added, not ordered yet
    GROWING = "growing"  # talking, before the order
    MATURE = "mature"  # ordered, still in touch
    DORMANT = "dormant"  # silent for a while: worth a reason to come back
    LOST = "lost"  # silent for long, or removed the rep


@dataclass(frozen=True)
class LifecycleRules:
    """The thresholds, in local calendar days (``[lifecycle]`` in config.toml)."""

    new_days: int = 3
    dormant_days_before_order: int = 7
    dormant_days_after_order: int = 30
    lost_days: int = 90
    catch_up_days: int = 2  # a sweep missed this many days (the bot was down) still sends the card


@dataclass(frozen=True)
class Activity:
    """What the state is derived from: when the customer was added and last wrote, whether they
    reached the order stage, whether they removed the rep."""

    added_at: datetime
    last_inbound_at: datetime | None
    ordered: bool
    deleted: bool = False

    @property
    def last_active_at(self) -> datetime:
        """The customer's last own activity: their last message, else the friend request."""
        if self.last_inbound_at is None:
            return self.added_at
        return max(self.last_inbound_at, self.added_at)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def silence_began(activity: Activity, tz: ZoneInfo) -> date:
    """The local day the current silence began (the reactivation card's key names it)."""
    return local_day(activity.last_active_at, tz)


def silent_days(now: datetime, activity: Activity, tz: ZoneInfo) -> int:
    """Whole local calendar days since the customer's last activity (0 on the same day)."""
    return (local_day(now, tz) - silence_began(activity, tz)).days


def dormant_days(rules: LifecycleRules, ordered: bool) -> int:
    return rules.dormant_days_after_order if ordered else rules.dormant_days_before_order


def lifecycle_state(now: datetime, activity: Activity, rules: LifecycleRules, tz: ZoneInfo) -> Lifecycle:
    """The state as of ``now``: lost, then dormant (by silence), then new, growing or mature."""
    if activity.deleted:
        return Lifecycle.LOST
    silent = silent_days(now, activity, tz)
    if silent >= rules.lost_days:
        return Lifecycle.LOST
    if silent >= dormant_days(rules, activity.ordered):
        return Lifecycle.DORMANT
    if activity.ordered:
        return Lifecycle.MATURE
    if (local_day(now, tz) - local_day(activity.added_at, tz)).days < rules.new_days:
        return Lifecycle.NEW
    return Lifecycle.GROWING


def newly_dormant(now: datetime, activity: Activity, rules: LifecycleRules, tz: ZoneInfo) -> bool:
    """Dormant since at most ``rules.catch_up_days`` days: worth a reactivation card. A customer
    long dormant when first swept (a database from before lifecycles, a long outage) is only
    marked: a flood of stale cards would bury the console."""
    late = silent_days(now, activity, tz) - dormant_days(rules, activity.ordered)
    return 0 <= late <= rules.catch_up_days


def turns_dormant_at(activity: Activity, rules: LifecycleRules, tz: ZoneInfo) -> datetime:
    """The instant (local midnight, as UTC) from which a still-silent customer is dormant."""
    day = silence_began(activity, tz) + timedelta(days=dormant_days(rules, activity.ordered))
    return local_at(day, time(0, 0), tz)
