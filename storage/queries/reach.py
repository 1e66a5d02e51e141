"""What the reach policy (quiet hours, daily caps, pacing) reads from the outgoing log."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import OutgoingMessage, ScheduledMessage
from storage.queries import ATTACHMENT_KEY_SUFFIX


async def sent_count(
    session: AsyncSession,
    kinds: Collection[str],
    start: datetime,
    end: datetime,
    *,
    customer_id: int | None = None,
    account_id: str | None = None,
) -> int:
    """Messages of these kinds sent in [start, end), to one customer or from one account (a cap)."""
    query = (
        select(func.count())
        .select_from(OutgoingMessage)
        .where(
            col(OutgoingMessage.kind).in_(kinds),
            OutgoingMessage.status == "sent",
            col(OutgoingMessage.sent_at) >= start,
            col(OutgoingMessage.sent_at) < end,
            col(OutgoingMessage.idempotency_key).not_like(f"%{ATTACHMENT_KEY_SUFFIX}"),
        )
    )
    if customer_id is not None:
        query = query.where(OutgoingMessage.customer_id == customer_id)
    if account_id is not None:
        query = query.where(OutgoingMessage.account_id == account_id)
    return int((await session.exec(query)).one())


async def last_sent_at(session: AsyncSession, account_id: str, kinds: Collection[str]) -> datetime | None:
    """When the account last sent a message of these kinds (pacing)."""
    query = select(func.max(OutgoingMessage.sent_at)).where(
        OutgoingMessage.account_id == account_id,
        col(OutgoingMessage.kind).in_(kinds),
        OutgoingMessage.status == "sent",
    )
    return (await session.exec(query)).first()


async def planned(
    session: AsyncSession, account_id: str, kinds: Collection[str], until: datetime
) -> list[ScheduledMessage]:
    """The account's pending messages of these kinds due by ``until`` (the send budget replays them)."""
    query = (
        select(ScheduledMessage)
        .where(
            ScheduledMessage.account_id == account_id,
            col(ScheduledMessage.kind).in_(kinds),
            ScheduledMessage.status == "pending",
            col(ScheduledMessage.due_at) <= until,
        )
        .order_by(col(ScheduledMessage.due_at))
    )
    return list((await session.exec(query)).all())


async def sent_per_customer(
    session: AsyncSession, account_id: str, kinds: Collection[str], start: datetime, end: datetime
) -> dict[int, int]:
    """Messages of these kinds the account sent in [start, end), per customer (their daily cap)."""
    query = (
        select(OutgoingMessage.customer_id, func.count())
        .where(
            OutgoingMessage.account_id == account_id,
            col(OutgoingMessage.kind).in_(kinds),
            OutgoingMessage.status == "sent",
            col(OutgoingMessage.sent_at) >= start,
            col(OutgoingMessage.sent_at) < end,
            col(OutgoingMessage.idempotency_key).not_like(f"%{ATTACHMENT_KEY_SUFFIX}"),
            col(OutgoingMessage.customer_id).is_not(None),
        )
        .group_by(col(OutgoingMessage.customer_id))
    )
    return {
        int(customer): int(count)
        for customer, count in (await session.exec(query)).all()
        if customer is not None
    }


async def planned_by_keys(session: AsyncSession, keys: Collection[str]) -> list[ScheduledMessage]:
    """Pending messages with these idempotency keys (a plan just made)."""
    if not keys:
        return []
    query = select(ScheduledMessage).where(
        col(ScheduledMessage.idempotency_key).in_(list(keys)), ScheduledMessage.status == "pending"
    )
    return list((await session.exec(query)).all())
