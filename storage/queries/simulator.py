"""The browser simulator's transcript: its own events and what the bot sent to its chats.

The simulator keeps the simulated phone's customers and both chat histories in the database (a
reload or a second tab shows the same state; a restart of a simulation database too). What the
customer and the rep typed are ``sim_*`` events; what the bot sent is the outgoing-message log.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, Event, OutgoingMessage

SIM_FRIEND = "sim_friend"  # a customer added on the simulated phone; data: handle, name, contact_id, hello
SIM_LINE = "sim_line"  # a line typed in the page; data: pane (phone | console), handle, after
SIM_KINDS = (SIM_FRIEND, SIM_LINE)


async def simulator_events(session: AsyncSession, account_id: str) -> list[Event]:
    """Every simulator event of the account, oldest first."""
    query = (
        select(Event)
        .where(Event.account_id == account_id, col(Event.kind).in_(SIM_KINDS))
        .order_by(col(Event.id))
    )
    return list((await session.exec(query)).all())


async def delivered_to(
    session: AsyncSession, account_id: str, conversation_ids: Collection[str], limit: int
) -> list[OutgoingMessage]:
    """The latest ``limit`` messages delivered to these chats, oldest first."""
    query = (
        select(OutgoingMessage)
        .where(
            OutgoingMessage.account_id == account_id,
            col(OutgoingMessage.conversation_id).in_(list(conversation_ids)),
            OutgoingMessage.status == "sent",
        )
        .order_by(col(OutgoingMessage.id).desc())
        .limit(limit)
    )
    return list(reversed((await session.exec(query)).all()))


async def last_outgoing_id(session: AsyncSession, account_id: str) -> int:
    """The newest outgoing-message id of the account (0: none): where a typed line falls among sends."""
    query = select(func.max(OutgoingMessage.id)).where(OutgoingMessage.account_id == account_id)
    return (await session.exec(query)).one() or 0


async def customer_ids(session: AsyncSession, account_id: str, wechat_ids: Collection[str]) -> dict[str, int]:
    """Customer ids by contact id (contacts without a customer yet are left out)."""
    if not wechat_ids:
        return {}
    query = select(Customer.wechat_id, Customer.id).where(
        Customer.account_id == account_id, col(Customer.wechat_id).in_(list(wechat_ids))
    )
    return {wechat_id: id_ for wechat_id, id_ in (await session.exec(query)).all() if id_ is not None}
