"""Lifecycle reads: the customers the daily sweep looks at, and the digest's count per state."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import and_, col, func, not_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer


async def sweepable(session: AsyncSession) -> list[Customer]:
    """Every customer whose state may still change: all but those who removed the rep and are
    already "lost" (they stay lost until they come back, which a message handles)."""
    settled = and_(col(Customer.deleted_at).is_not(None), Customer.lifecycle == "lost")
    query = select(Customer).where(not_(settled)).order_by(col(Customer.id))
    return list((await session.exec(query)).all())


async def state_counts(session: AsyncSession, accounts: Collection[str]) -> list[tuple[str, str, int]]:
    """(account, lifecycle state, customers) for these accounts, as of the last sweep."""
    query = (
        select(Customer.account_id, Customer.lifecycle, func.count())
        .where(col(Customer.account_id).in_(list(accounts)))
        .group_by(col(Customer.account_id), col(Customer.lifecycle))
    )
    return [(a, s, int(n)) for a, s, n in (await session.exec(query)).all()]
