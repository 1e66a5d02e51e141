"""What the dispatcher reads from the outbox beyond the repository's claim and mark."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ScheduledMessage


async def claimed(session: AsyncSession, accounts: Collection[str] | None = None) -> list[ScheduledMessage]:
    """Rows still ``claimed``: after a crash, those a dispatcher took and never settled (only of
    ``accounts``, when given: the ones whose owner died)."""
    query = select(ScheduledMessage).where(ScheduledMessage.status == "claimed")
    if accounts is not None:
        query = query.where(col(ScheduledMessage.account_id).in_(list(accounts)))
    return list((await session.exec(query)).all())
