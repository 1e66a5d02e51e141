"""Lifecycle reads: the customers the daily sweep looks at, and the digest's count per state."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlmodel import and_, col, func, not_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, Event


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


async def state_counts_at(
    session: AsyncSession, accounts: Collection[str], at: datetime
) -> list[tuple[str, str, int]]:
    """(account, lifecycle state, customers) as they stood at ``at``: the customers added by then,
    each in the state its first ``lifecycle_changed`` event after ``at`` left (its "from"), else
    its stored state. Read back from the present, so a database from before lifecycles (no
    events) counts as it stands now."""
    ids = list(accounts)
    customers = (
        await session.exec(
            select(Customer.id, Customer.account_id, Customer.lifecycle).where(
                col(Customer.account_id).in_(ids), col(Customer.added_at) < at
            )
        )
    ).all()
    changes = (
        await session.exec(
            select(Event.customer_id, Event.data)
            .where(col(Event.account_id).in_(ids), Event.kind == "lifecycle_changed", col(Event.at) >= at)
            .order_by(col(Event.at), col(Event.id))
        )
    ).all()
    then: dict[int, str] = {}
    for customer_id, data in changes:
        if customer_id is not None and customer_id not in then and data.get("from"):
            then[customer_id] = str(data["from"])
    counts: dict[tuple[str, str], int] = {}
    for customer_id, account_id, stored in customers:
        key = (account_id, then.get(customer_id, stored) if customer_id is not None else stored)
        counts[key] = counts.get(key, 0) + 1
    return [(a, s, n) for (a, s), n in counts.items()]
