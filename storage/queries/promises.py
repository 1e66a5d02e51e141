"""What keeping a template's promise reads: the latest message of a kind a customer received."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import OutgoingMessage
from storage.queries import ATTACHMENT_KEY_SUFFIX


async def latest_sent(
    session: AsyncSession, customer_id: int, kinds: Collection[str]
) -> OutgoingMessage | None:
    """The newest message of one of ``kinds`` that went out to the customer (sent, or echoed back);
    an attachment sent after a text is not a message of its own here (the text made the promise)."""
    query = (
        select(OutgoingMessage)
        .where(
            OutgoingMessage.customer_id == customer_id,
            col(OutgoingMessage.kind).in_(kinds),
            col(OutgoingMessage.sent_at).is_not(None),
            col(OutgoingMessage.idempotency_key).not_like(f"%{ATTACHMENT_KEY_SUFFIX}"),
        )
        .order_by(col(OutgoingMessage.sent_at).desc(), col(OutgoingMessage.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()
