"""Gentle reach: may an automated message go out now, or when?

Automated kinds (countdown, aftercare, follow-up): quiet hours, a per-customer and a per-account cap
per local day, and a random pause between two automated sends of one account. Welcomes answer the
customer's own action, so only a pause between two welcomes of one account applies to them;
``/send`` replies are the rep's choice and are never held back here.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar, cast

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Config
from bot.domain.kinds import AUTOMATED_KINDS, Kind
from bot.domain.schedule import QuietHours, local_day_bounds
from storage.models import ScheduledMessage
from storage.queries import reach as queries

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    send: bool
    not_before: datetime | None = None  # when not sending now: the earliest time it may go
    reason: str = ""
    # held back for the whole account's stream (pacing, quiet hours), not for this customer (a
    # cap): the dispatcher queues such rows, each to its own slot
    queue: bool = False


SEND = Verdict(True)

# what a batch's verdicts have read already: its claims' transaction sends nothing until it
# commits, so the counts and the last send time it reads stay true for the whole batch
Memo = dict[tuple[str, str | int | None], object]


class ReachPolicy:
    def __init__(self, config: Config, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        reach = config.reach
        self.quiet = QuietHours(reach.quiet_start, reach.quiet_end, config.tz)

    async def verdict(
        self,
        session: AsyncSession,
        row: ScheduledMessage,
        now: datetime,
        memo: Memo | None = None,
        *,
        least_gap: bool = False,
    ) -> Verdict:
        """``memo``: shared by the verdicts of one dispatch batch (one transaction, nothing sent
        in between), so each count is read once per batch rather than once per row."""
        memo = {} if memo is None else memo
        if row.kind == Kind.WELCOME:
            return await self._welcome_pace(session, row, now, memo, least_gap)
        if row.kind not in AUTOMATED_KINDS:
            return SEND
        reach = self.config.reach
        if self.quiet.contains(now):
            return Verdict(False, self.quiet.next_allowed(now), "quiet hours", queue=True)
        day_start, day_end = local_day_bounds(now, self.config.tz)
        tomorrow = self.quiet.next_allowed(day_end)
        sent_today = await _once(
            memo,
            ("customer_today", row.customer_id),
            lambda: queries.sent_count(
                session, AUTOMATED_KINDS, day_start, day_end, customer_id=row.customer_id
            ),
        )
        if sent_today >= reach.customer_daily_cap:
            return Verdict(False, tomorrow, f"customer daily cap ({reach.customer_daily_cap}) reached")
        account_today = await _once(
            memo,
            ("account_today", row.account_id),
            lambda: queries.sent_count(
                session, AUTOMATED_KINDS, day_start, day_end, account_id=row.account_id
            ),
        )
        if account_today >= reach.account_daily_cap:
            return Verdict(False, tomorrow, f"account daily cap ({reach.account_daily_cap}) reached")
        last = await _once(
            memo,
            ("automated_last", row.account_id),
            lambda: queries.last_sent_at(session, row.account_id, AUTOMATED_KINDS),
        )
        if last is not None:
            gap = self.spacing("automated")[0] if least_gap else self.gap("automated")
            if now < last + gap:
                return Verdict(False, last + gap, "pacing", queue=True)
        return SEND

    def spacing(self, stream: str) -> tuple[timedelta, timedelta]:
        """The gap range between two sends of one account: welcomes, or automated kinds."""
        low, high = (
            self.config.welcome.min_gap_seconds if stream == "welcome" else self.config.reach.pacing_seconds
        )
        return timedelta(seconds=low), timedelta(seconds=high)

    async def _welcome_pace(
        self, session: AsyncSession, row: ScheduledMessage, now: datetime, memo: Memo, least_gap: bool
    ) -> Verdict:
        """Welcomes answer the customer's own action (no quiet hours, no caps) but one account
        never sends two within ``welcome.min_gap_seconds``."""
        last = await _once(
            memo,
            ("welcome_last", row.account_id),
            lambda: queries.last_sent_at(session, row.account_id, (Kind.WELCOME,)),
        )
        if last is not None:
            gap = self.spacing("welcome")[0] if least_gap else self.gap("welcome")
            if now < last + gap:
                return Verdict(False, last + gap, "pacing", queue=True)
        return SEND

    def gap(self, stream: str) -> timedelta:
        low, high = self.spacing(stream)
        return timedelta(seconds=self.rng.uniform(low.total_seconds(), high.total_seconds()))


async def _once(memo: Memo, key: tuple[str, str | int | None], read: Callable[[], Awaitable[T]]) -> T:
    """``read()`` the first time ``key`` is asked for in this batch, then its remembered value."""
    if key not in memo:
        memo[key] = await read()
    return cast(T, memo[key])
