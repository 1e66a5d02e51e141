"""Lifecycle reads: the customers the daily sweep looks at, and the digest's count per state."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlmodel import and_, col, func, not_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer


async def sweepable(session: AsyncSession) -> list[Customer]:
    """Every customer whose state may still change: all but those who removed the rep and are
    already "lost" (they stay lost until they come back, which a message handles)."""
    settled = and_(col(Customer.deleted_at).is_not(None), Customer.lifecycle == "lost")
    query = select(Customer).where(not_(settled)).order_by(col(Customer.id))
    return list((await session.exec(query)).all())


# per stored state: its oldest friend-add, its oldest last activity, whether any removed the rep
OldestActivity = tuple[str, datetime | None, datetime | None, bool]


async def oldest_activity(session: AsyncSession) -> list[OldestActivity]:
    """Per stored state but "lost" (it stays until the customer writes): the oldest friend-add
    and last activity (last message, else the friend-add) and whether any customer removed the
    rep. The next sweep that can change a state is bounded from these, in one grouped query."""
    last_active = func.coalesce(Customer.last_inbound_at, Customer.added_at)
    query = (
        select(
            Customer.lifecycle,
            func.min(Customer.added_at),
            func.min(last_active),
            func.count(col(Customer.deleted_at)),
        )
        .where(Customer.lifecycle != "lost")
        .group_by(col(Customer.lifecycle))
    )
    return [(s, _utc(a), _utc(b), bool(n)) for s, a, b, n in (await session.exec(query)).all()]


def _utc(value: datetime | None) -> datetime | None:
    """An aggregate over a UTC column: aware UTC whichever way the driver returns it."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


async def state_counts(session: AsyncSession, accounts: Collection[str]) -> list[tuple[str, str, int]]:
    """(account, lifecycle state, customers) for these accounts, as of the last sweep."""
    query = (
        select(Customer.account_id, Customer.lifecycle, func.count())
        .where(col(Customer.account_id).in_(list(accounts)))
        .group_by(col(Customer.account_id), col(Customer.lifecycle))
    )
    return [(a, s, int(n)) for a, s, n in (await session.exec(query)).all()]
