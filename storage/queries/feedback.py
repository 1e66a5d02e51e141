"""The event-log reads behind /wrong, /label and training on corrections."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Event

CORRECTION = "correction"  # the event a rep's /wrong or /label leaves


async def latest_of_kinds(
    session: AsyncSession, customer_id: int, kinds: Collection[str], limit: int
) -> list[Event]:
    """The customer's latest events of these kinds, newest first (the readings /wrong may correct)."""
    query = (
        select(Event)
        .where(Event.customer_id == customer_id, col(Event.kind).in_(kinds))
        .order_by(col(Event.id).desc())
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def last_message_in(session: AsyncSession, customer_id: int) -> Event | None:
    """The customer's last message (what /label marks)."""
    query = (
        select(Event)
        .where(Event.customer_id == customer_id, Event.kind == "message_in")
        .order_by(col(Event.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def latest_correction(session: AsyncSession, customer_id: int, text: str) -> Event | None:
    """The latest correction of this customer's message ``text``."""
    query = (
        select(Event)
        .where(Event.customer_id == customer_id, Event.kind == CORRECTION, Event.text == text)
        .order_by(col(Event.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def all_corrections(session: AsyncSession) -> list[Event]:
    """Every correction, oldest first (the training set --with-feedback reads)."""
    query = select(Event).where(Event.kind == CORRECTION).order_by(col(Event.id))
    return list((await session.exec(query)).all())
