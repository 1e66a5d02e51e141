"""What the dispatcher reads from the outbox beyond the repository's claim and mark."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ScheduledMessage


async def claimed(session: AsyncSession) -> list[ScheduledMessage]:
    """Rows still ``claimed``: after a crash, those a dispatcher took and never settled."""
    query = select(ScheduledMessage).where(ScheduledMessage.status == "claimed")
    return list((await session.exec(query)).all())
