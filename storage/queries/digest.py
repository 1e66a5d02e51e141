"""The digest's measures: one grouped, indexed query each, for a whole team in one window.

Each returns plain tuples (no ORM objects) keyed by account, so a large team stays cheap. Windows are
half-open, [start, end).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, Event, OutgoingMessage, ScheduledMessage
from storage.queries import ATTACHMENT_KEY_SUFFIX


def _events_in(accounts: Collection[str], start: datetime, end: datetime) -> tuple[Any, ...]:
    return (col(Event.account_id).in_(list(accounts)), col(Event.at) >= start, col(Event.at) < end)


async def event_counts(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[str, str, int]]:
    """(account, kind, events) for these event kinds (orders, failed welcomes, deletions)."""
    query = (
        select(Event.account_id, Event.kind, func.count())
        .where(*_events_in(accounts, start, end), col(Event.kind).in_(kinds))
        .group_by(Event.account_id, Event.kind)
    )
    return [(a, k, c) for a, k, c in (await session.exec(query)).all()]


async def customers_with_events(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[str, int]]:
    """(account, distinct customers) with an event of these kinds (new friends, customers who replied)."""
    query = (
        select(Event.account_id, func.count(func.distinct(Event.customer_id)))
        .where(*_events_in(accounts, start, end), col(Event.kind).in_(kinds))
        .group_by(Event.account_id)
    )
    return [(a, c) for a, c in (await session.exec(query)).all()]


async def event_details(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[str, str, Mapping[str, Any], str]]:
    """(account, kind, data, text) of each event of these kinds (objections, stage moves, tags,
    corrections): counted by what they carry."""
    query = select(Event.account_id, Event.kind, Event.data, Event.text).where(
        *_events_in(accounts, start, end), col(Event.kind).in_(kinds)
    )
    return [(a, k, d, t) for a, k, d, t in (await session.exec(query)).all()]


async def sent_counts(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[str, str, int]]:
    """(account, kind, messages) sent in the window, from the outgoing log."""
    query = (
        select(OutgoingMessage.account_id, OutgoingMessage.kind, func.count())
        .where(
            col(OutgoingMessage.account_id).in_(list(accounts)),
            OutgoingMessage.status == "sent",
            col(OutgoingMessage.sent_at) >= start,
            col(OutgoingMessage.sent_at) < end,
            col(OutgoingMessage.kind).in_(kinds),
            col(OutgoingMessage.idempotency_key).not_like(f"%{ATTACHMENT_KEY_SUFFIX}"),
        )
        .group_by(OutgoingMessage.account_id, OutgoingMessage.kind)
    )
    return [(a, k, c) for a, k, c in (await session.exec(query)).all()]


async def scheduled_outcomes(
    session: AsyncSession,
    accounts: Collection[str],
    start: datetime,
    end: datetime,
    kinds: Collection[str],
    statuses: Collection[str],
) -> list[tuple[str, str, int]]:
    """(account, status, rows) of scheduled rows of these kinds that ended so in the window."""
    query = (
        select(ScheduledMessage.account_id, ScheduledMessage.status, func.count())
        .where(
            col(ScheduledMessage.account_id).in_(list(accounts)),
            col(ScheduledMessage.kind).in_(kinds),
            col(ScheduledMessage.status).in_(statuses),
            col(ScheduledMessage.updated_at) >= start,
            col(ScheduledMessage.updated_at) < end,
        )
        .group_by(ScheduledMessage.account_id, ScheduledMessage.status)
    )
    return [(a, s, c) for a, s, c in (await session.exec(query)).all()]


async def planned_counts(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[str, int]]:
    """(account, rows) of pending scheduled rows of these kinds due in the window (tomorrow's plan)."""
    query = (
        select(ScheduledMessage.account_id, func.count())
        .where(
            col(ScheduledMessage.account_id).in_(list(accounts)),
            col(ScheduledMessage.kind).in_(kinds),
            ScheduledMessage.status == "pending",
            col(ScheduledMessage.due_at) >= start,
            col(ScheduledMessage.due_at) < end,
        )
        .group_by(ScheduledMessage.account_id)
    )
    return [(a, c) for a, c in (await session.exec(query)).all()]


# who a customer is in the digest, without loading ORM objects
_NAMES = (Customer.account_id, col(Customer.id), Customer.display_name, Customer.remark)
Named = tuple[str, int | None, str, str]  # account, customer id, display name, remark


def _live(accounts: Collection[str]) -> tuple[Any, ...]:
    return (col(Customer.account_id).in_(list(accounts)), col(Customer.deleted_at).is_(None))


def _unanswered(accounts: Collection[str]) -> tuple[Any, ...]:
    """Live customers whose last message has had no human answer, and was not an opt-out (a
    customer who asked for no more messages is owed none)."""
    opted_out = (
        select(Event.id)
        .where(
            Event.customer_id == Customer.id,
            Event.kind == "opt_out",
            col(Event.at) >= Customer.last_inbound_at,
        )
        .exists()
    )
    return (
        *_live(accounts),
        col(Customer.last_inbound_at).is_not(None),
        or_(
            col(Customer.last_outbound_at).is_(None),
            col(Customer.last_outbound_at) < Customer.last_inbound_at,
        ),
        ~opted_out,
    )


async def owed_replies(
    session: AsyncSession, accounts: Collection[str], before: datetime, since: datetime
) -> list[Named]:
    """Customers who wrote in [since, before) and have had no answer since, longest waiting first."""
    query = (
        select(*_NAMES)
        .where(
            *_unanswered(accounts),
            col(Customer.last_inbound_at) < before,
            col(Customer.last_inbound_at) >= since,
        )
        .order_by(col(Customer.last_inbound_at))
    )
    return [(a, i, n, r) for a, i, n, r in (await session.exec(query)).all()]


async def owed_dropped(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime
) -> list[tuple[str, int]]:
    """Per account, unanswered customers whose message turned too old in [start, end) (when the
    ``since`` bound of :func:`owed_replies` passed it): counted once, then no longer listed."""
    query = (
        select(Customer.account_id, func.count())
        .where(
            *_unanswered(accounts),
            col(Customer.last_inbound_at) >= start,
            col(Customer.last_inbound_at) < end,
        )
        .group_by(col(Customer.account_id))
    )
    return [(a, int(n)) for a, n in (await session.exec(query)).all()]


async def at_risk(
    session: AsyncSession, accounts: Collection[str], stages: Collection[str], silent_since: datetime
) -> list[Named]:
    """Live customers in these (late) stages with no message either way since ``silent_since``."""
    query = (
        select(*_NAMES)
        .where(
            *_live(accounts),
            col(Customer.stage).in_(stages),
            or_(col(Customer.last_inbound_at).is_(None), col(Customer.last_inbound_at) < silent_since),
            or_(col(Customer.last_outbound_at).is_(None), col(Customer.last_outbound_at) < silent_since),
        )
        .order_by(col(Customer.id))
    )
    return [(a, i, n, r) for a, i, n, r in (await session.exec(query)).all()]


async def customer_events(
    session: AsyncSession, accounts: Collection[str], start: datetime, end: datetime, kinds: Collection[str]
) -> list[tuple[Event, str, str]]:
    """(event, display name, remark) of each event of these kinds about a customer (hot leads,
    kept promises, opt-outs, referrals), oldest first: the digest names who it was."""
    query = (
        select(Event, Customer.display_name, Customer.remark)
        .join(Customer, col(Customer.id) == col(Event.customer_id))
        .where(*_events_in(accounts, start, end), col(Event.kind).in_(kinds))
        .order_by(col(Event.at), col(Event.id))
    )
    return [(e, n, r) for e, n, r in (await session.exec(query)).all()]


async def rep_answers(
    session: AsyncSession, customer_ids: Collection[int], since: datetime, until: datetime
) -> list[tuple[int, datetime]]:
    """(customer, when) of each human answer to these customers in [since, until): the rep typing
    in the chat (``rep_message``) or a script they chose with /send (a ``reply`` sent)."""
    if not customer_ids:
        return []
    ids = list(customer_ids)
    typed = select(Event.customer_id, Event.at).where(
        col(Event.customer_id).in_(ids),
        Event.kind == "rep_message",
        col(Event.at) >= since,
        col(Event.at) < until,
    )
    sent = select(OutgoingMessage.customer_id, OutgoingMessage.sent_at).where(
        col(OutgoingMessage.customer_id).in_(ids),
        OutgoingMessage.kind == "reply",
        OutgoingMessage.status == "sent",
        col(OutgoingMessage.sent_at) >= since,
        col(OutgoingMessage.sent_at) < until,
    )
    found = [*(await session.exec(typed)).all(), *(await session.exec(sent)).all()]
    return [(int(c), at) for c, at in found if c is not None and at is not None]
