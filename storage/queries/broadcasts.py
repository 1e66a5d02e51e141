"""Segment sends (/broadcast): the customers a filter picks, the rep's pending preview."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, CustomerTag, Event

PREVIEWED = "broadcast_previewed"
CONFIRMED = "broadcast_confirmed"
CANCELLED = "broadcast_cancelled"


async def segment(
    session: AsyncSession,
    accounts: Collection[str],
    stages: Collection[str],
    lifecycles: Collection[str],
    tags: Collection[tuple[str, str]],
) -> list[Customer]:
    """The accounts' customers in any of ``stages`` and ``lifecycles`` (when given) carrying every
    (group, value) of ``tags``, deleted ones included (the preview counts them), by id."""
    query = select(Customer).where(col(Customer.account_id).in_(list(accounts)))
    if stages:
        query = query.where(col(Customer.stage).in_(list(stages)))
    if lifecycles:
        query = query.where(col(Customer.lifecycle).in_(list(lifecycles)))
    for group, value in tags:
        tagged = select(CustomerTag.customer_id).where(CustomerTag.group == group, CustomerTag.value == value)
        query = query.where(col(Customer.id).in_(tagged))
    return list((await session.exec(query.order_by(col(Customer.id)))).all())


async def latest_preview(session: AsyncSession, account_id: str, actor: str) -> Event | None:
    """The newest broadcast preview ``actor`` asked for in the account's console."""
    query = (
        select(Event)
        .where(Event.account_id == account_id, Event.kind == PREVIEWED, Event.text == actor)
        .order_by(col(Event.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def cancelled_since(session: AsyncSession, account_id: str, actor: str, event_id: int) -> bool:
    """Whether ``actor`` stopped broadcasts (/broadcast 取消) after the event ``event_id``."""
    query = select(Event.id).where(
        Event.account_id == account_id, Event.kind == CANCELLED, Event.text == actor, col(Event.id) > event_id
    )
    return (await session.exec(query)).first() is not None


async def is_confirmed(session: AsyncSession, account_id: str, preview_id: int) -> bool:
    query = select(Event.id).where(
        Event.account_id == account_id, Event.kind == CONFIRMED, Event.external_id == str(preview_id)
    )
    return (await session.exec(query)).first() is not None


async def latest_reasons(session: AsyncSession, customer_ids: Collection[int], kind: str) -> dict[int, str]:
    """Each customer's newest ``kind`` event's ``reason`` (why a paused customer is paused)."""
    if not customer_ids:
        return {}
    query = (
        select(Event.customer_id, Event.data)
        .where(col(Event.customer_id).in_(list(customer_ids)), Event.kind == kind)
        .order_by(col(Event.id))
    )
    return {
        cid: str(data.get("reason", "")) for cid, data in (await session.exec(query)).all() if cid is not None
    }
