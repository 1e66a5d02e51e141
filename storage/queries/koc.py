"""KOC candidates' measures: per customer, how many events of a kind (orders, referrals, messages).

One grouped query per measure over the event log, joined to the customers it may apply to (live,
not opted out, in the stages given), keeping only those at or above the rule's minimum.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, Event

Candidate = tuple[str, int, str, str, str]  # account, customer id, display name, remark, stage


async def counts_at_least(
    session: AsyncSession,
    accounts: Collection[str],
    stages: Collection[str],
    kind: str,
    minimum: int,
    *,
    since: datetime | None = None,
    customer_id: int | None = None,
) -> dict[int, int]:
    """{customer id: events of ``kind``} for live, not opted-out customers of these accounts in
    these stages with at least ``minimum`` such events (since ``since``; one customer only)."""
    where: list[Any] = [
        col(Event.account_id).in_(list(accounts)),
        Event.kind == kind,
        col(Customer.deleted_at).is_(None),
        col(Customer.paused_at).is_(None),
        col(Customer.stage).in_(list(stages)),
    ]
    if since is not None:
        where.append(col(Event.at) >= since)
    if customer_id is not None:
        where.append(Event.customer_id == customer_id)
    query = (
        select(Event.customer_id, func.count())
        .join(Customer, col(Customer.id) == col(Event.customer_id))
        .where(*where)
        .group_by(col(Event.customer_id))
        .having(func.count() >= minimum)
    )
    return {int(c): int(n) for c, n in (await session.exec(query)).all() if c is not None}


async def named(session: AsyncSession, customer_ids: Collection[int]) -> list[Candidate]:
    """Who these customers are, by id."""
    if not customer_ids:
        return []
    query = select(Customer).where(col(Customer.id).in_(list(customer_ids))).order_by(col(Customer.id))
    return [
        (c.account_id, c.id, c.display_name, c.remark, c.stage)
        for c in (await session.exec(query)).all()
        if c.id is not None
    ]
