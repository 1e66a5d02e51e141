"""The send budget of a plan, checked when it is made (a countdown, an order's aftercare) or
previewed (a broadcast: :meth:`SendBudget.forecast` times messages not planned yet).

Replays the account's pending automated messages with the new ones (bot/domain/budget.py) and
returns the new ones that could not go out in their window, so the command's reply can say so at
once instead of the steps expiring on the day. Reads only, in the planning transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Config
from bot.domain.budget import Limits, Sent, Slot, late_slots, replay
from bot.domain.kinds import AUTOMATED_KINDS
from bot.domain.schedule import QuietHours, local_day_bounds
from storage.models import ScheduledMessage
from storage.queries import reach as queries


@dataclass(frozen=True)
class Shortfall:
    """New messages that would miss their window, and how many other automated messages of the
    account are planned in that stretch (what crowds them out)."""

    late: list[ScheduledMessage]
    crowd: int


class SendBudget:
    def __init__(self, config: Config) -> None:
        self.config = config
        reach = config.reach
        self.limits = Limits(
            quiet=QuietHours(reach.quiet_start, reach.quiet_end, config.tz),
            tz=config.tz,
            customer_daily_cap=reach.customer_daily_cap,
            account_daily_cap=reach.account_daily_cap,
            gap=timedelta(seconds=max(reach.pacing_seconds)),
        )

    async def shortfall(
        self, session: AsyncSession, account_id: str, keys: Collection[str], now: datetime
    ) -> Shortfall:
        """Which of the just-planned rows ``keys`` (pending, in ``session``) would not go out in time."""
        mine = [row for row in await queries.planned_by_keys(session, keys) if row.account_id == account_id]
        if not mine:
            return Shortfall([], 0)
        until = max(row.not_after for row in mine)
        rows = await queries.planned(session, account_id, AUTOMATED_KINDS, until)
        sent = await self._sent(session, account_id, now)
        slots = [_slot(row, now) for row in rows]
        late_keys = {slot.key for slot in late_slots(slots, self.limits, sent)}
        late = [row for row in mine if row.idempotency_key in late_keys]
        if not late:
            return Shortfall([], 0)
        first, last = min(r.due_at for r in late), max(r.not_after for r in late)
        own = {row.idempotency_key for row in mine}
        crowd = sum(1 for row in rows if row.idempotency_key not in own and first <= row.due_at <= last)
        return Shortfall(sorted(late, key=lambda r: r.due_at), crowd)

    async def forecast(
        self, session: AsyncSession, account_id: str, new: list[Slot], now: datetime
    ) -> dict[str, datetime | None]:
        """When each of the not yet planned ``new`` slots would go out (None: it misses its window),
        after everything the account already planned: a broadcast preview plans nothing."""
        if not new:
            return {}
        until = max(slot.not_after for slot in new)
        rows = await queries.planned(session, account_id, AUTOMATED_KINDS, until)
        sent = await self._sent(session, account_id, now)
        keys = {slot.key for slot in new}
        timeline = replay([*(_slot(row, now) for row in rows), *new], self.limits, sent)
        return {slot.key: at for slot, at in timeline if slot.key in keys}

    async def _sent(self, session: AsyncSession, account_id: str, now: datetime) -> Sent:
        start, end = local_day_bounds(now, self.config.tz)
        return Sent(
            last_at=await queries.last_sent_at(session, account_id, AUTOMATED_KINDS),
            day=now.astimezone(self.config.tz).date(),
            account_today=await queries.sent_count(
                session, AUTOMATED_KINDS, start, end, account_id=account_id
            ),
            customers_today=await queries.sent_per_customer(session, account_id, AUTOMATED_KINDS, start, end),
        )


def _slot(row: ScheduledMessage, now: datetime) -> Slot:
    return Slot(row.idempotency_key, row.customer_id or 0, max(row.due_at, now), row.not_after, row.id or 0)
