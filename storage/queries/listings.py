"""Lists for the dashboard and the JSON API: customers by filter, scheduled rows, the funnel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, CustomerTag, ScheduledMessage


@dataclass(frozen=True)
class CustomerFilter:
    """Every given field must hold (empty: any)."""

    stage: str = ""
    account: str = ""
    tag: tuple[str, str] | None = None  # (group, value)
    silent_since: datetime | None = None  # no message either way since then


def _customers(where: CustomerFilter) -> Any:
    query = select(Customer)
    if where.stage:
        query = query.where(Customer.stage == where.stage)
    if where.account:
        query = query.where(Customer.account_id == where.account)
    if where.tag is not None:
        group, value = where.tag
        query = query.where(
            col(Customer.id).in_(
                select(CustomerTag.customer_id).where(CustomerTag.group == group, CustomerTag.value == value)
            )
        )
    if where.silent_since is not None:
        since = where.silent_since
        query = query.where(
            or_(col(Customer.last_inbound_at).is_(None), col(Customer.last_inbound_at) < since),
            or_(col(Customer.last_outbound_at).is_(None), col(Customer.last_outbound_at) < since),
        )
    return query


async def count_customers(session: AsyncSession, where: CustomerFilter) -> int:
    query = select(func.count()).select_from(_customers(where).subquery())
    return int((await session.exec(query)).one())


async def customers(session: AsyncSession, where: CustomerFilter, offset: int, limit: int) -> list[Customer]:
    """One page of the matching customers, by id."""
    query = _customers(where).order_by(col(Customer.id)).offset(offset).limit(limit)
    return list((await session.exec(query)).all())


async def scheduled(session: AsyncSession, status: str, limit: int) -> list[ScheduledMessage]:
    """Scheduled rows in this status, earliest due first."""
    query = (
        select(ScheduledMessage)
        .where(ScheduledMessage.status == status)
        .order_by(col(ScheduledMessage.due_at))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def stage_counts(session: AsyncSession, account_id: str | None = None) -> dict[str, int]:
    """Live (not deleted) customers per stage, of one account or all."""
    query = select(Customer.stage, func.count()).where(col(Customer.deleted_at).is_(None))
    if account_id is not None:
        query = query.where(Customer.account_id == account_id)
    return {stage: count for stage, count in (await session.exec(query.group_by(Customer.stage))).all()}
