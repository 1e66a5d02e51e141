"""Friend requests the bot received but never finished recording (a kill between the platform's
accept and the database write)."""

from __future__ import annotations

from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Event

# what settles a received friend request: recorded as a friend, or refused by the platform
SETTLED = ("friend_request", "friend_confirmed", "accept_failed")


async def unsettled_requests(session: AsyncSession, account_id: str) -> list[Event]:
    """``friend_request_received`` events of this account with no settling event, oldest first."""
    settled = aliased(Event)
    done = (
        select(settled.id)
        .where(
            settled.account_id == Event.account_id,
            settled.external_id == Event.external_id,
            col(settled.kind).in_(SETTLED),
        )
        .exists()
    )
    query = (
        select(Event)
        .where(Event.account_id == account_id, Event.kind == "friend_request_received", ~done)
        .order_by(col(Event.id))
    )
    return list((await session.exec(query)).all())
