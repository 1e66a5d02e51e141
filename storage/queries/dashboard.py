"""The dashboard's reads beyond the digest's: stage history (conversion, time in stage), event
activity per local day for the trends, and the names of customers a listing mentions.

Plain tuples, no ORM objects; windows are half-open, [start, end). The service asks per local day
(the configured zone, DST included): SQL has no portable way to group by it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, Event, StageChange

# customer, stage entered, when, when the customer removed the rep (None: still a friend)
StageEntry = tuple[int, str, datetime, datetime | None]


async def reached(session: AsyncSession, accounts: Collection[str], stages: Collection[str]) -> int:
    """Customers of these accounts who ever entered any of these stages (the first stage at the
    friend-add counts): with a stage and every later one, those who reached it."""
    query = (
        select(func.count(func.distinct(StageChange.customer_id)))
        .join(Customer, col(Customer.id) == col(StageChange.customer_id))
        .where(col(Customer.account_id).in_(list(accounts)), col(StageChange.to_stage).in_(list(stages)))
    )
    return int((await session.exec(query)).one())


async def stage_entries(
    session: AsyncSession, accounts: Collection[str], since: datetime
) -> list[StageEntry]:
    """Every stage a customer of these accounts entered since ``since`` (the first stage at the
    friend-add, then each move), per customer in time order: bounded by the window, not by
    everyone ever added."""
    query = (
        select(StageChange.customer_id, StageChange.to_stage, StageChange.at, Customer.deleted_at)
        .join(Customer, col(Customer.id) == col(StageChange.customer_id))
        .where(col(Customer.account_id).in_(list(accounts)), col(StageChange.at) >= since)
        .order_by(col(StageChange.customer_id), col(StageChange.at), col(StageChange.id))
    )
    return [(c, s, _utc(at), _utc_or_none(gone)) for c, s, at, gone in (await session.exec(query)).all()]


async def day_activity(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[str, int | None, int]]:
    """(kind, customer, events) in one window (a local day): grouped per customer, so a busy day
    returns one row per customer who was active, not one per message, and the trends can count
    customers (new friends, who replied) or events (orders, objections)."""
    query = (
        select(Event.kind, Event.customer_id, func.count())
        .where(
            col(Event.account_id).in_(list(accounts)),
            col(Event.kind).in_(list(kinds)),
            col(Event.at) >= start,
            col(Event.at) < end,
        )
        .group_by(col(Event.kind), col(Event.customer_id))
    )
    return [(k, c, int(n)) for k, c, n in (await session.exec(query)).all()]


async def names(session: AsyncSession, customer_ids: Collection[int]) -> dict[int, str]:
    """How a page names these customers: the rep's remark, else the WeChat display name."""
    if not customer_ids:
        return {}
    query = select(col(Customer.id), Customer.display_name, Customer.remark).where(
        col(Customer.id).in_(list(customer_ids))
    )
    return {i: (remark or name) for i, name, remark in (await session.exec(query)).all() if i is not None}


def _utc(value: datetime) -> datetime:
    """A UTC column as an aware datetime whichever way the driver returns it."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)
