"""One way to plan an outgoing message: its idempotency key and its outbox row.

Keys are built from domain values only (account, customer, kind, then what makes the message unique:
a plan and step, a message id, a suggestion), so planning the same thing twice, in this process or
after a restart, finds the row already there instead of sending twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.kinds import Kind, Status
from storage.models import ScheduledMessage


def message_key(account_id: str | None, kind: Kind, *parts: object, customer_id: int | None = None) -> str:
    """``account:customer:kind:part...``; the customer is left out for messages to the rep or a
    supervisor, the account for messages that belong to no account (a supervisor's digest)."""
    head = [str(v) for v in (account_id, customer_id) if v is not None]
    return ":".join([*head, str(kind), *(str(p) for p in parts)])


def outbox_row(
    *,
    account_id: str,
    kind: Kind,
    key: str,
    due: datetime,
    not_after: datetime,
    now: datetime,
    customer_id: int | None = None,
    sequence: str | None = None,
    step: str = "-",
    template: str = "-",
    context: dict[str, Any] | None = None,
) -> ScheduledMessage:
    """A pending outbox row; ``key`` comes from :func:`message_key`."""
    return ScheduledMessage(
        account_id=account_id,
        customer_id=customer_id,
        kind=str(kind),
        sequence=sequence if sequence is not None else str(kind),
        step=step,
        template=template,
        context=context or {},
        due_at=due,
        not_after=not_after,
        status=str(Status.PENDING),
        idempotency_key=key,
        created_at=now,
        updated_at=now,
    )
