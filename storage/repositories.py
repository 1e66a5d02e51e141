"""Small async repositories, one per aggregate. They take a session; services own the transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.group_commit import must_reach_disk
from storage.models import (
    Account,
    AccountLease,
    Customer,
    CustomerTag,
    Event,
    Note,
    OutgoingMessage,
    ScheduledMessage,
    StageChange,
)


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


def _rowcount(result: object) -> int:
    """Rows touched by an INSERT/UPDATE (SQLAlchemy types ``execute`` results generically)."""
    return int(cast(CursorResult[Any], result).rowcount)


def _insert_ignoring_conflict(
    session: AsyncSession, table: Any, values: dict[str, Any] | list[dict[str, Any]], key: list[str]
) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the dialect in use (SQLite or PostgreSQL), of one
    row or several in one statement (built for these values: for rare writes; a hot path runs
    :func:`_new_row` with the values as parameters)."""
    return _insert(session, table).values(values).on_conflict_do_nothing(index_elements=key)


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def _insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's own ``INSERT`` (it knows ``ON CONFLICT``): PostgreSQL's or SQLite's. Imported
    here, not at the top: the PostgreSQL dialect costs ~2 MB of memory a SQLite bot never needs."""
    if _dialect(session) == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


# statements built once per shape and reused with bind parameters: building a statement (its
# clauses, bound values and cache key) cost more CPU than running it (issue 20)
_BUILT: dict[tuple[Any, ...], Any] = {}


def _built(shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The statement of this ``shape`` (what varies its SQL: the dialect, the filters that
    apply), built by ``build`` the first time. The values go in as parameters at each run."""
    statement = _BUILT.get(shape)
    if statement is None:
        statement = _BUILT[shape] = build()
    return statement


def _new_row(session: AsyncSession, table: sa.Table, key: tuple[str, ...], returning: bool = False) -> Any:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` [``RETURNING id``], built once per dialect:
    run it with the row's values as parameters (one row; the columns are the parameters' keys)."""

    def build() -> Any:
        statement = _insert(session, table).on_conflict_do_nothing(index_elements=list(key))
        return statement.returning(table.c.id) if returning else statement

    return _built(("new_row", _dialect(session), table.name, key, returning), build)


class Accounts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(
        self, account_id: str, nickname: str, role: str, profile: dict[str, Any], now: datetime
    ) -> None:
        account = await self.session.get(Account, account_id)
        if account is None:
            # several processes starting at once (PostgreSQL): one insert wins, the others wait for
            # it and find the row (a plain insert failed them on the primary key)
            new = Account(
                id=account_id, nickname=nickname, role=role, profile=profile, created_at=now, updated_at=now
            )
            await self.session.exec(
                _insert_ignoring_conflict(self.session, _table(Account), new.model_dump(), ["id"])
            )
            account = await self.session.get(Account, account_id)
        if account is not None:
            account.nickname, account.role, account.profile, account.updated_at = nickname, role, profile, now

    async def set_self_contact(self, account_id: str, contact_id: str) -> None:
        account = await self.session.get(Account, account_id)
        if account is not None:
            account.self_contact_id = contact_id

    async def lock(self, account_id: str) -> None:
        """Hold the account's row until the transaction ends, so that what is numbered per account
        (suggestions) is numbered in turn. PostgreSQL locks the row. SQLite needs no statement:
        this process runs one transaction at a time there (``Database._writer``), and a SELECT
        would lock nothing anyway. ``FOR NO KEY UPDATE``: rows written earlier in the transaction
        that refer to the account hold a key-share lock on it, which this lock must not wait for
        (a deadlock otherwise)."""
        bind = self.session.bind
        if bind is not None and bind.dialect.name == "sqlite":
            return
        query = select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
        await self.session.exec(query)


# every customer message finds its customer: built once (a new select() per message cost more
# than running it; issue 20)
_CUSTOMER_BY_WECHAT_ID = select(Customer).where(
    Customer.account_id == sa.bindparam("account_id"), Customer.wechat_id == sa.bindparam("wechat_id")
)


class Customers:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, customer_id: int) -> Customer | None:
        return await self.session.get(Customer, customer_id)

    async def by_wechat_id(self, account_id: str, wechat_id: str) -> Customer | None:
        params = {"account_id": account_id, "wechat_id": wechat_id}
        return (await self.session.exec(_CUSTOMER_BY_WECHAT_ID, params=params)).first()

    async def add(self, customer: Customer) -> Customer:
        self.session.add(customer)
        await self.session.flush()
        return customer

    async def insert_new(self, customer: Customer) -> int | None:
        """Insert a customer in one round trip, unless the account already has this contact:
        returns the new id (None: the contact is a customer already; nothing changed)."""
        table = _table(Customer)
        statement = _new_row(self.session, table, ("account_id", "wechat_id"), returning=True)
        params = customer.model_dump(exclude={"id"})
        row_id = (await self.session.exec(statement, params=params)).scalar_one_or_none()
        return None if row_id is None else int(row_id)

    async def note_outbound(self, reached: list[tuple[int, str]], at: datetime) -> None:
        """Record contact with customers, (customer id, conversation id), for messages that reached
        a chat: only a customer's own chat counts (not a suggestion about them to the rep)."""
        if not reached:
            return
        table = _table(Customer)
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"), table.c.wechat_id == sa.bindparam("b_chat"))
            .values(last_outbound_at=at)
        )
        await self.session.exec(
            statement,
            params=[{"b_id": customer_id, "b_chat": chat} for customer_id, chat in reached],
        )

    async def get_many(self, customer_ids: Collection[int]) -> dict[int, Customer]:
        """Customers by id in one query (the dispatcher's batch)."""
        if not customer_ids:
            return {}
        query = select(Customer).where(col(Customer.id).in_(list(customer_ids)))
        return {c.id: c for c in (await self.session.exec(query)).all() if c.id is not None}


class Tags:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, customer_id: int, group: str, value: str, source: str, added_by: str, at: datetime
    ) -> bool:
        """Add a tag unless the customer has it already. Returns whether it was new."""
        statement = _new_row(self.session, _table(CustomerTag), ("customer_id", "group", "value"))
        params = {
            "customer_id": customer_id,
            "group": group,
            "value": value,
            "source": source,
            "added_by": added_by,
            "added_at": at,
        }
        return bool(_rowcount(await self.session.exec(statement, params=params)))

    async def remove(self, customer_id: int, group: str, value: str) -> bool:
        """Remove a tag. Returns whether the customer had it."""
        table = _table(CustomerTag)
        statement = sa.delete(table).where(
            table.c.customer_id == customer_id, table.c.group == group, table.c.value == value
        )
        return bool(_rowcount(await self.session.exec(statement)))

    async def for_customer(self, customer_id: int) -> list[CustomerTag]:
        query = (
            select(CustomerTag).where(CustomerTag.customer_id == customer_id).order_by(col(CustomerTag.id))
        )
        return list((await self.session.exec(query)).all())


_STAGE_CHANGE_INSERT = sa.insert(_table(StageChange)).values(
    {
        column: sa.bindparam(column)
        for column in ("customer_id", "from_stage", "to_stage", "actor", "reason", "at")
    }
)


class StageHistory:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self, customer_id: int, from_stage: str | None, to_stage: str, actor: str, reason: str, at: datetime
    ) -> None:
        values = {
            "customer_id": customer_id,
            "from_stage": from_stage,
            "to_stage": to_stage,
            "actor": actor,
            "reason": reason,
            "at": at,
        }
        await self.session.exec(_STAGE_CHANGE_INSERT, params=values)

    async def move(self, customer: Customer, to_stage: str, actor: str, reason: str, at: datetime) -> None:
        """The one way a customer changes stage: the customer row, its history and the
        ``stage_changed`` event (digests and script statistics read it) change together."""
        assert customer.id is not None
        old = customer.stage
        customer.stage = to_stage
        await self.record(customer.id, old, to_stage, actor, reason, at)
        await Events(self.session).record(
            customer.account_id,
            "stage_changed",
            at,
            customer_id=customer.id,
            data={"from": old, "to": to_stage, "actor": actor},
        )

    async def for_customer(self, customer_id: int, limit: int) -> list[StageChange]:
        """The customer's newest ``limit`` stage changes, oldest first (the card's history)."""
        query = (
            select(StageChange)
            .where(StageChange.customer_id == customer_id)
            .order_by(col(StageChange.at).desc(), col(StageChange.id).desc())
            .limit(limit)
        )
        return list(reversed((await self.session.exec(query)).all()))


class Notes:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, customer_id: int, text: str, author: str, at: datetime) -> None:
        self.session.add(Note(customer_id=customer_id, text=text, author=author, at=at))

    async def for_customer(self, customer_id: int) -> list[Note]:
        query = select(Note).where(Note.customer_id == customer_id).order_by(col(Note.id))
        return list((await self.session.exec(query)).all())


class EventStamps:
    """How many events of each kind this process has written (committed or not). A cache of
    something computed from events (script statistics) compares stamps to know whether this
    process wrote any of its kinds since; other processes' writes it must bound by age."""

    _counts: ClassVar[Counter[str]] = Counter()

    @classmethod
    def wrote(cls, kinds: Iterable[str]) -> None:
        cls._counts.update(kinds)

    @classmethod
    def of(cls, kinds: Iterable[str]) -> tuple[int, ...]:
        return tuple(cls._counts[kind] for kind in kinds)


class Offered(NamedTuple):
    """An event as a suggestion reads it: an ``Event`` without its text, loaded without the ORM."""

    id: int
    customer_id: int | None
    kind: str
    data: dict[str, Any]


def _offered_statement() -> Any:
    """The newest events of some kinds of an account since a time, a page: built and compiled once
    (a new statement per message cost more than running it; issue 20). The page's ids are chosen
    first, the rows read after: on SQLite the ids come from the (account, kind, at) index alone, so
    a busy day's suggestions are sorted as ids, not read whole (500 of them: 89 us instead of 134)."""
    table = _table(Event)
    newest = table.alias("newest")
    page = (
        sa.select(newest.c.id)
        .where(
            newest.c.account_id == sa.bindparam("account_id"),
            newest.c.kind.in_(sa.bindparam("kinds", expanding=True)),
            newest.c.at >= sa.bindparam("since"),
        )
        .order_by(newest.c.id.desc())
        .limit(sa.bindparam("limit"))
        .offset(sa.bindparam("skip"))
    )
    return (
        sa.select(table.c.id, table.c.customer_id, table.c.kind, table.c.data)
        .where(table.c.id.in_(page.scalar_subquery()))
        .order_by(table.c.id.desc())
    )


_OFFERED = _offered_statement()
# an event's columns but its id, and its insert (with and without the new id back): built once
_EVENT_COLUMNS = ("account_id", "customer_id", "kind", "text", "data", "external_id", "at")
_EVENT_INSERT = sa.insert(_table(Event)).values({column: sa.bindparam(column) for column in _EVENT_COLUMNS})
_EVENT_INSERT_RETURNING = _EVENT_INSERT.returning(_table(Event).c.id)


class Events:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        account_id: str,
        kind: str,
        at: datetime,
        *,
        customer_id: int | None = None,
        text: str = "",
        data: dict[str, Any] | None = None,
        external_id: str | None = None,
    ) -> bool:
        """Log an event. With an ``external_id``, a replay of the same platform event is ignored:
        returns False when this event was already recorded."""
        values: dict[str, Any] = {
            "account_id": account_id,
            "kind": kind,
            "at": at,
            "customer_id": customer_id,
            "text": text,
            "data": data or {},
            "external_id": external_id,
        }
        EventStamps.wrote([kind])
        if external_id is None:  # a Core insert: an ORM object and its flush cost 3-5 times more
            await self.session.exec(_EVENT_INSERT, params=values)
            return True
        statement = _new_row(self.session, _table(Event), ("account_id", "kind", "external_id"))
        return bool(_rowcount(await self.session.exec(statement, params=values)))

    async def add(self, event: Event) -> Event:
        """Log an event and return it with its id (others refer to it: a suggestion, a plan). A
        Core insert returning the id: the event is not kept in the session (nothing changes it)."""
        EventStamps.wrote([event.kind])
        values = {column: getattr(event, column) for column in _EVENT_COLUMNS}
        event.id = int((await self.session.exec(_EVENT_INSERT_RETURNING, params=values)).scalar_one())
        return event

    async def first_of_kind(self, kind: str) -> Event | None:
        """The oldest event of ``kind`` for any account (a database-wide marker)."""
        query = select(Event).where(Event.kind == kind).order_by(col(Event.id)).limit(1)
        return (await self.session.exec(query)).first()

    async def latest_of_kind(self, kind: str) -> Event | None:
        """The newest event of ``kind`` for any account."""
        query = select(Event).where(Event.kind == kind).order_by(col(Event.id).desc()).limit(1)
        return (await self.session.exec(query)).first()

    async def latest(self, customer_id: int, kind: str) -> Event | None:
        query = (
            select(Event)
            .where(Event.customer_id == customer_id, Event.kind == kind)
            .order_by(col(Event.id).desc())
            .limit(1)
        )
        return (await self.session.exec(query)).first()

    async def of_account(
        self, account_id: str, kinds: Collection[str], since: datetime, limit: int, *, skip: int = 0
    ) -> list[Event]:
        """The account's newest ``limit`` events of these ``kinds`` since ``since``, newest first
        (after the newest ``skip``: a page)."""
        query = (
            select(Event)
            .where(Event.account_id == account_id, col(Event.kind).in_(kinds), col(Event.at) >= since)
            .order_by(col(Event.id).desc())
            .offset(skip)
            .limit(limit)
        )
        return list((await self.session.exec(query)).all())

    async def offered(
        self, account_id: str, kinds: Collection[str], since: datetime, limit: int, *, skip: int = 0
    ) -> list[Offered]:
        """:meth:`of_account` as suggestions read it (no text; Core rows, not ORM objects: this runs
        for every objection a customer raises)."""
        page = {"limit": limit, "skip": skip}  # the session flushes what the unit wrote first
        params = {"account_id": account_id, "kinds": list(kinds), "since": since, **page}
        return [Offered(*row) for row in await self.session.exec(_OFFERED, params=params)]

    async def any_since(self, customer_id: int, kinds: Collection[str], since: datetime) -> bool:
        """Whether the customer has an event of these ``kinds`` at or after ``since``."""
        query = (
            select(Event.id)
            .where(Event.customer_id == customer_id, col(Event.kind).in_(kinds), col(Event.at) >= since)
            .limit(1)
        )
        return (await self.session.exec(query)).first() is not None

    async def count(self, customer_id: int, kind: str) -> int:
        query = (
            select(sa.func.count())
            .select_from(Event)
            .where(Event.customer_id == customer_id, Event.kind == kind)
        )
        return int((await self.session.exec(query)).one())

    async def recent(self, kind: str, limit: int, account_id: str | None = None) -> list[Event]:
        """The newest ``limit`` events of a kind (of one account, given ``account_id``), newest
        first (a bounded read, never a full scan)."""
        query = select(Event).where(Event.kind == kind)
        if account_id is not None:
            query = query.where(Event.account_id == account_id)
        query = query.order_by(col(Event.id).desc()).limit(limit)
        return list((await self.session.exec(query)).all())

    async def of_customers(self, kind: str, customer_ids: Collection[int], since: datetime) -> list[Event]:
        if not customer_ids:
            return []
        query = select(Event).where(
            Event.kind == kind, col(Event.customer_id).in_(list(customer_ids)), col(Event.at) >= since
        )
        return list((await self.session.exec(query)).all())

    async def record_all(self, events: Sequence[Event]) -> None:
        """Log several events in one round trip; one whose ``external_id`` was recorded already (a
        replay) is left out, like :meth:`record` does."""
        if not events:
            return
        EventStamps.wrote(e.kind for e in events)
        # one statement built once, run for each event (see Outbox.plan_many)
        statement = _new_row(self.session, _table(Event), ("account_id", "kind", "external_id"))
        await self.session.exec(statement, params=[e.model_dump(exclude={"id"}) for e in events])

    async def record_many(self, events: list[dict[str, Any]]) -> None:
        """Log many events in one statement: dicts of account_id, kind, at, customer_id, text and
        data (no external ids)."""
        if events:
            EventStamps.wrote(e["kind"] for e in events)
            await self.session.exec(
                sa.insert(_table(Event)),
                params=[
                    {"customer_id": None, "text": "", "data": {}, "external_id": None, **e} for e in events
                ],
            )


def _note_echo_statement(by_platform_id: bool) -> Any:
    """:meth:`OutgoingLog.echo_note`'s one statement (every message the account sees as its own
    runs it): built once, with bind parameters."""
    table = _table(OutgoingMessage)
    by_text = (
        sa.select(table.c.id)
        .where(
            table.c.account_id == sa.bindparam("b_account_id"),
            table.c.conversation_id == sa.bindparam("b_conversation_id"),
            table.c.created_at >= sa.bindparam("b_since", type_=table.c.created_at.type),
            table.c.text == sa.bindparam("b_text"),
            table.c.echoed_at.is_(None),
            # a send that returned its platform id is matched by that id alone
            table.c.platform_message_id.is_(None),
            # not an IN list: a relaxed write runs this statement as compiled once
            sa.or_(table.c.status == "sending", table.c.status == "sent", table.c.status == "unknown"),
        )
        .order_by(table.c.created_at, table.c.id)
        .limit(1)
        .scalar_subquery()
    )
    target: Any = by_text
    if by_platform_id:  # by platform id first (COALESCE looks no further when found)
        by_id = (
            sa.select(table.c.id)
            .where(
                table.c.account_id == sa.bindparam("b_account_id"),
                table.c.platform_message_id == sa.bindparam("b_platform_message_id"),
            )
            .limit(1)
            .scalar_subquery()
        )
        target = sa.func.coalesce(by_id, by_text)
    return (
        sa.update(table)
        .where(table.c.id == target)
        .values(
            # an unknown send's echo is noted by OutgoingLog.settle_echoed, with its settlement
            echoed_at=sa.case(
                (table.c.status == "unknown", table.c.echoed_at),
                else_=sa.func.coalesce(table.c.echoed_at, sa.bindparam("b_at", type_=table.c.echoed_at.type)),
            ),
            platform_message_id=sa.func.coalesce(
                table.c.platform_message_id, sa.bindparam("b_platform_message_id", type_=sa.String)
            ),
        )
        .returning(table.c.id, table.c.status)
    )


_SEND_BY_KEY = select(OutgoingMessage).where(
    OutgoingMessage.idempotency_key == sa.bindparam("idempotency_key")
)
_SEND_BY_PLATFORM_ID = select(OutgoingMessage).where(
    OutgoingMessage.account_id == sa.bindparam("account_id"),
    OutgoingMessage.platform_message_id == sa.bindparam("platform_message_id"),
)
_FINISH = (
    sa.update(_table(OutgoingMessage))
    .where(_table(OutgoingMessage).c.id == sa.bindparam("b_id"))
    .values(
        status="sent",
        sent_at=sa.bindparam("b_at", type_=_table(OutgoingMessage).c.sent_at.type),
        platform_message_id=sa.func.coalesce(
            sa.bindparam("b_pid", type_=sa.String), _table(OutgoingMessage).c.platform_message_id
        ),
    )
)


class Settled(NamedTuple):
    """What :meth:`OutgoingLog.settle_echoed` settled."""

    idempotency_key: str
    customer_id: int | None
    text: str
    kind: str


_SETTLE_ECHOED = (
    sa.update(_table(OutgoingMessage))
    .where(
        _table(OutgoingMessage).c.id == sa.bindparam("b_id"), _table(OutgoingMessage).c.status == "unknown"
    )
    .values(
        status="sent",
        error="",
        sent_at=sa.bindparam("b_at", type_=_table(OutgoingMessage).c.sent_at.type),
        echoed_at=sa.func.coalesce(
            _table(OutgoingMessage).c.echoed_at,
            sa.bindparam("b_at", type_=_table(OutgoingMessage).c.echoed_at.type),
        ),
    )
    .returning(
        _table(OutgoingMessage).c.idempotency_key,
        _table(OutgoingMessage).c.customer_id,
        _table(OutgoingMessage).c.text,
        _table(OutgoingMessage).c.kind,
    )
)
_NOTE_ECHO_BY_ID = _note_echo_statement(by_platform_id=True)
_NOTE_ECHO_BY_TEXT = _note_echo_statement(by_platform_id=False)


# in a scheduled row's last_error: the send broke off midway and is never retried blindly
DELIVERY_UNKNOWN = "delivery unknown"


class OutgoingLog:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def begin(
        self,
        *,
        account_id: str,
        customer_id: int | None,
        conversation_id: str,
        kind: str,
        text: str,
        idempotency_key: str,
        at: datetime,
        attempt_group: str | None = None,
    ) -> int | None:
        """Record that a send is about to happen; returns the outgoing row's id. Returns None when
        this key was already used: the message was sent (or attempted) before and must not go out
        again. One statement when the key is new (the dispatcher's hot path)."""
        statement = _new_row(self.session, _table(OutgoingMessage), ("idempotency_key",), returning=True)
        params = {
            "account_id": account_id,
            "customer_id": customer_id,
            "conversation_id": conversation_id,
            "kind": kind,
            "text": text,
            "idempotency_key": idempotency_key,
            "status": "sending",
            "created_at": at,
            "attempt_group": attempt_group,
        }
        new_id = (await self.session.exec(statement, params=params)).scalar_one_or_none()
        if new_id is not None:
            return int(new_id)
        row = await self.by_key(idempotency_key)
        if row is not None and row.status == "failed":
            # a definite failure earlier (nothing was delivered): this attempt may go ahead
            row.status, row.error, row.text, row.created_at = "sending", "", text, at
            row.attempt_group = attempt_group
            return row.id
        return None

    async def begin_many(self, sends: list[dict[str, Any]], at: datetime) -> list[int | None]:
        """:meth:`begin` for many sends in one statement (a dispatcher's batch): dicts of account_id,
        customer_id, conversation_id, kind, text, idempotency_key and attempt_group (distinct keys).
        Returns the ids in the order given (None: the key was used before and must not go out
        again). New rows get ascending ids in that order, the order the batch sends them in; a key
        that failed definitely before is taken again one statement at a time (rare)."""
        if not sends:
            return []
        table = _table(OutgoingMessage)
        # one statement with a list of parameters: SQLAlchemy sends it as one multi-row INSERT
        # ("insertmanyvalues") whose compiled form is cached, unlike a VALUES list built per batch
        statement = _built(
            ("begin_many", _dialect(self.session)),
            lambda: (
                _insert(self.session, table)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(table.c.id, table.c.idempotency_key)
            ),
        )
        params = [{**send, "status": "sending", "created_at": at} for send in sends]
        result = await self.session.exec(statement, params=params)
        new = {key: int(row_id) for row_id, key in result.all()}
        ids: list[int | None] = []
        for send in sends:
            key = send["idempotency_key"]
            if key in new:
                ids.append(new[key])
            else:  # used before: only a definite failure may go again (as in begin)
                ids.append(await self.begin(**send, at=at))
        return ids

    # the one write a batch makes between two sends (Dispatcher): a prepared statement, so the
    # dispatcher can run it on a connection of its own without building it per send
    SET_STATUS = (
        sa.update(_table(OutgoingMessage))
        .where(_table(OutgoingMessage).c.id == sa.bindparam("b_id"))
        .values(status=sa.bindparam("b_status"))
    )

    async def by_key(self, idempotency_key: str) -> OutgoingMessage | None:
        params = {"idempotency_key": idempotency_key}
        return (await self.session.exec(_SEND_BY_KEY, params=params)).first()

    async def finish_many(self, sends: list[tuple[int, str | None]], at: datetime) -> None:
        """Sends that went out, (row id, platform message id), in one statement. A platform id an
        echo supplied is kept when the send returned none."""
        if not sends:
            return
        await self.session.exec(
            _FINISH,
            params=[{"b_id": row_id, "b_at": at, "b_pid": pid} for row_id, pid in sends],
        )

    async def set_status(self, row_id: int, status: str) -> None:
        table = _table(OutgoingMessage)
        await self.session.exec(sa.update(table).where(table.c.id == row_id).values(status=status))

    async def fail(self, row_id: int, error: str) -> None:
        table = _table(OutgoingMessage)
        await self.session.exec(
            sa.update(table).where(table.c.id == row_id).values(status="failed", error=error)
        )

    async def fenced(self, row_id: int, attempt_group: str, error: str) -> None:
        """A reserved send its process did not start because it lost the account's lease: failed
        (nothing delivered), unless the new owner's recovery settled or reserved it again."""
        table = _table(OutgoingMessage)
        await self.session.exec(
            sa.update(table)
            .where(table.c.id == row_id, table.c.status == "sending", table.c.attempt_group == attempt_group)
            .values(status="failed", error=error)
        )

    async def never_attempted(
        self, group_prefix: str, accounts: Collection[str] | None = None
    ) -> dict[str, list[int]]:
        """Per attempt group starting with ``group_prefix``: the sends still "sending" that come
        after the group's first such send. A group's sends go out one at a time in id order, each
        outcome written before the next send starts: if its process is gone and no outcome was
        lost (the caller's checks), these were never handed to the platform. ``accounts``: only
        those sends of these accounts (the first send is still judged over the whole group)."""
        query = select(OutgoingMessage.id, OutgoingMessage.attempt_group, OutgoingMessage.account_id).where(
            # a literal, not a parameter, and no ORDER BY: SQLite then reads the small partial
            # index of sends under way instead of the whole log
            sa.text("outgoing_message.status = 'sending'"),
            col(OutgoingMessage.attempt_group).startswith(group_prefix, autoescape=True),
        )
        later: dict[str, list[int]] = {}
        for row_id, group, account_id in sorted(
            (await self.session.exec(query)).all(), key=lambda r: r[0] or 0
        ):
            if group is None or row_id is None:
                continue
            if group not in later:
                later[group] = []  # the first one: maybe under way
            elif accounts is None or account_id in accounts:
                later[group].append(row_id)
        return later

    async def by_platform_id(self, account_id: str, platform_message_id: str) -> OutgoingMessage | None:
        params = {"account_id": account_id, "platform_message_id": platform_message_id}
        return (await self.session.exec(_SEND_BY_PLATFORM_ID, params=params)).first()

    async def unknown(self, row_id: int, error: str) -> OutgoingMessage | None:
        """The call broke off midway: the platform may have the message. Never sent again; an echo
        of it settles the question (see :meth:`echo_note`)."""
        row = await self.session.get(OutgoingMessage, row_id)
        if row is not None:
            if row.echoed_at is not None:  # it came back already: it was delivered
                row.status, row.sent_at = "sent", row.echoed_at
            else:
                row.status, row.error = "unknown", error
        return row

    @staticmethod
    def echo_note(
        account_id: str,
        *,
        platform_message_id: str,
        conversation_id: str,
        text: str,
        at: datetime,
        since: datetime,
    ) -> tuple[Any, dict[str, Any]]:
        """The statement (and its parameters) that finds what the account sent that it now sees
        again as its own message and notes the echo, in one indexed statement, nothing loaded: by
        platform id, else the oldest not yet echoed send of the same text to the same chat since
        ``since`` whose platform id is unknown (still sending, broken off, or a puppet that
        returns none). It returns the matched send's id and status, nothing when the message is
        none of ours. A send whose status is "unknown" is matched but its echo time is not
        noted (only a platform id it lacked): :meth:`settle_echoed` notes it and settles the send
        in one transaction, so this statement may be committed on its own (a relaxed write:
        :meth:`Messenger.record_echo`)."""
        statement = _NOTE_ECHO_BY_ID if platform_message_id else _NOTE_ECHO_BY_TEXT
        params = {
            "b_account_id": account_id,
            "b_conversation_id": conversation_id,
            "b_since": since,
            "b_text": text,
            "b_at": at,
            "b_platform_message_id": platform_message_id or None,
        }
        return statement, params

    async def settle_echoed(self, row_id: int, at: datetime) -> Settled | None:
        """A send whose outcome was unknown came back as an echo: it was delivered, and its echo
        is noted with it. One conditional statement: of two processes that heard the same echo
        (an account changing hands) only one settles it (None for the other, and for a send
        that was not unknown)."""
        params = {"b_id": row_id, "b_at": at}
        row = (await self.session.exec(_SETTLE_ECHOED, params=params)).first()
        return None if row is None else Settled(*row)


def _claim_statement(dialect: str, by_account: bool, only: bool, leased: bool) -> Any:
    """:meth:`Outbox.claim_due`'s statement for one shape (which filters apply), built once:
    ``now``, ``limit`` and the filters' values (``accounts``, ``only``, ``owner`` and
    ``lease_now``) are bind parameters."""
    table = _table(ScheduledMessage)
    now = sa.bindparam("b_now", type_=table.c.due_at.type)
    earliest = (
        sa.select(table.c.id)
        .where(table.c.status == "pending", table.c.due_at <= now)
        .order_by(table.c.due_at, table.c.id)
        .limit(sa.bindparam("b_limit"))
    )
    if by_account:
        earliest = earliest.where(table.c.account_id.in_(sa.bindparam("b_accounts", expanding=True)))
    if only:
        earliest = earliest.where(table.c.id.in_(sa.bindparam("b_only", expanding=True)))
    if leased:
        lease = _table(AccountLease)
        earliest = earliest.where(
            sa.exists().where(
                lease.c.account_id == table.c.account_id,
                lease.c.owner == sa.bindparam("b_owner"),
                lease.c.expires_at > sa.bindparam("b_lease_now", type_=lease.c.expires_at.type),
            )
        )
    if dialect == "postgresql":
        # concurrent dispatchers skip each other's locked rows; a locking CTE is evaluated
        # exactly once (an IN sub-select may be re-planned as a join that loses rows)
        picked = earliest.with_for_update(skip_locked=True).cte("picked")
        chosen: Any = table.c.id.in_(sa.select(picked.c.id))
    else:
        # the statement runs under SQLite's single writer lock; a status check here would make
        # the planner scan every pending row instead of looking up the chosen ids
        chosen = table.c.id.in_(earliest)
    statement = (
        sa.update(table)
        .where(chosen)
        .values(status="claimed", claimed_at=now, attempts=table.c.attempts + 1, updated_at=now)
        .returning(*table.c)
    )
    # loaded by the ORM from RETURNING: far cheaper than validating each row as a model
    return select(ScheduledMessage).from_statement(statement).execution_options(populate_existing=True)


_MARK = (
    sa.update(_table(ScheduledMessage))
    .where(_table(ScheduledMessage).c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(
        status=sa.bindparam("b_status"),
        updated_at=sa.bindparam("b_updated_at"),
        last_error=sa.bindparam("b_last_error"),
    )
)


def _set_status_statement(by_kind: bool, by_not_after: bool) -> Any:
    """:meth:`Outbox.set_status_for_customer`'s statement for one shape, built once."""
    table = _table(ScheduledMessage)
    statement = sa.update(table).where(
        table.c.customer_id == sa.bindparam("b_customer_id"),
        table.c.status.in_(sa.bindparam("b_from_statuses", expanding=True)),
    )
    if by_kind:
        statement = statement.where(table.c.kind.in_(sa.bindparam("b_kinds", expanding=True)))
    if by_not_after:
        statement = statement.where(
            table.c.not_after < sa.bindparam("b_not_after_before", type_=table.c.not_after.type)
        )
    return statement.values(
        status=sa.bindparam("b_to_status"),
        updated_at=sa.bindparam("b_at", type_=table.c.updated_at.type),
        last_error=sa.bindparam("b_reason"),
    )


class Outbox:
    """The durable schedule. Planning is an upsert on the idempotency key."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def plan(self, message: ScheduledMessage) -> bool:
        """Insert a planned message unless one with the same key exists. Returns whether it was new."""
        statement = _new_row(self.session, _table(ScheduledMessage), ("idempotency_key",))
        params = message.model_dump(exclude={"id"})
        return bool(_rowcount(await self.session.exec(statement, params=params)))

    async def plan_many(self, messages: Sequence[ScheduledMessage]) -> None:
        """:meth:`plan` for several rows in one round trip (one statement built once, run for each
        row: a statement holding the rows' values was compiled again for every friend request);
        a row whose key was planned already is left as it is."""
        if not messages:
            return
        statement = _new_row(self.session, _table(ScheduledMessage), ("idempotency_key",))
        await self.session.exec(statement, params=[m.model_dump(exclude={"id"}) for m in messages])

    async def plan_returning_id(self, message: ScheduledMessage) -> int | None:
        """:meth:`plan`, returning the new row's id (None when the key was planned already), so
        the caller can send exactly this row once its transaction commits."""
        statement = _new_row(self.session, _table(ScheduledMessage), ("idempotency_key",), returning=True)
        # one round trip: the id comes back with the insert (nothing comes back on a conflict)
        result = await self.session.exec(statement, params=message.model_dump(exclude={"id"}))
        row_id = result.scalar_one_or_none()
        return None if row_id is None else int(row_id)

    async def get(self, row_id: int) -> ScheduledMessage | None:
        return await self.session.get(ScheduledMessage, row_id)

    async def by_key(self, idempotency_key: str) -> ScheduledMessage | None:
        query = select(ScheduledMessage).where(ScheduledMessage.idempotency_key == idempotency_key)
        return (await self.session.exec(query)).first()

    async def open_for_customer(self, customer_id: int) -> list[ScheduledMessage]:
        """Rows still to go out for a customer (pending, or paused until /resume), earliest first."""
        query = (
            select(ScheduledMessage)
            .where(
                ScheduledMessage.customer_id == customer_id,
                col(ScheduledMessage.status).in_(("pending", "paused")),
            )
            .order_by(col(ScheduledMessage.due_at))
        )
        return list((await self.session.exec(query)).all())

    async def automated_between(
        self, customer_id: int, kinds: Collection[str], start: datetime, end: datetime
    ) -> ScheduledMessage | None:
        """The latest automated row for a customer due in [start, end) that went or will go out
        (sent, or still pending or claimed): a message the rep's own would follow."""
        query = (
            select(ScheduledMessage)
            .where(
                ScheduledMessage.customer_id == customer_id,
                col(ScheduledMessage.kind).in_(tuple(kinds)),
                col(ScheduledMessage.status).in_(("pending", "claimed", "sent")),
                col(ScheduledMessage.due_at) >= start,
                col(ScheduledMessage.due_at) < end,
            )
            .order_by(col(ScheduledMessage.due_at).desc())
        )
        return (await self.session.exec(query)).first()

    async def set_status_for_customer(
        self,
        customer_id: int,
        *,
        from_statuses: Collection[str],
        to_status: str,
        at: datetime,
        reason: str,
        kinds: Collection[str] | None = None,
        not_after_before: datetime | None = None,
    ) -> int:
        """Move a customer's rows in ``from_statuses`` (of ``kinds``; all kinds when None; only
        those whose ``not_after`` is before ``not_after_before`` when given) to ``to_status``.
        Returns how many rows moved: holding, resuming and cancelling all go through here. A
        group-committed unit that moved rows reaches the disk before its commit returns (see
        storage/group_commit.py): a machine's crash must not undo a cancelled follow-up or a
        held countdown."""
        shape = ("set_status_for_customer", kinds is not None, not_after_before is not None)
        statement = _built(shape, lambda: _set_status_statement(*shape[1:]))
        params: dict[str, Any] = {
            "b_customer_id": customer_id,
            "b_from_statuses": list(from_statuses),
            "b_kinds": list(kinds or ()),
            "b_not_after_before": not_after_before,
            "b_to_status": to_status,
            "b_at": at,
            "b_reason": reason,
        }
        return self._moved(_rowcount(await self.session.exec(statement, params=params)))

    def _moved(self, rows: int) -> int:
        if rows:
            must_reach_disk(self.session)
        return rows

    async def set_status_for_accounts(
        self,
        accounts: Collection[str],
        kind: str,
        *,
        from_statuses: Collection[str],
        to_status: str,
        at: datetime,
        reason: str,
    ) -> int:
        """Move the accounts' rows of ``kind`` in ``from_statuses`` to ``to_status`` (stopping what
        is left of a broadcast). Returns how many rows moved (see :meth:`set_status_for_customer`)."""
        table = _table(ScheduledMessage)
        statement = (
            sa.update(table)
            .where(
                table.c.account_id.in_(list(accounts)),
                table.c.kind == kind,
                table.c.status.in_(list(from_statuses)),
            )
            .values(status=to_status, updated_at=at, last_error=reason)
        )
        return self._moved(_rowcount(await self.session.exec(statement)))

    async def claim_due(
        self,
        now: datetime,
        accounts: Collection[str] | None,
        limit: int,
        only: Collection[int] | None = None,
        lease: tuple[str, datetime] | None = None,
    ) -> list[ScheduledMessage]:
        """Atomically move up to ``limit`` of the earliest due pending rows to ``claimed`` and return
        them, earliest first. ``lease`` (owner, the real time now): only rows of accounts whose
        lease this owner holds unexpired, checked in the same statement, so a process that lost an
        account (paused past its lease) claims none of its rows even before it notices.

        A single ``UPDATE ... WHERE status = 'pending' ... RETURNING`` so two dispatchers can never
        claim the same row; on PostgreSQL the sub-select skips rows another dispatcher has locked.
        The rows are loaded by the ORM from RETURNING and detached (copies the session does not
        track: the caller's marks are statements of their own).
        """
        dialect = _dialect(self.session)
        shape = ("claim_due", dialect, accounts is not None, only is not None, lease is not None)
        orm = _built(shape, lambda: _claim_statement(dialect, *shape[2:]))
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        if accounts is not None:
            params["b_accounts"] = list(accounts)
        if only is not None:
            params["b_only"] = list(only)
        if lease is not None:
            params["b_owner"], params["b_lease_now"] = lease
        rows = list((await self.session.exec(orm, params=params)).scalars().all())
        for row in rows:  # detached: a rollback of the batch must not expire what the caller holds
            self.session.expunge(row)
        return sorted(rows, key=lambda row: (row.due_at, row.id or 0))

    async def next_due_at(self, accounts: Collection[str] | None = None) -> datetime | None:
        query = select(sa.func.min(ScheduledMessage.due_at)).where(ScheduledMessage.status == "pending")
        if accounts is not None:
            query = query.where(col(ScheduledMessage.account_id).in_(list(accounts)))
        return (await self.session.exec(query)).first()

    async def mark(self, row_id: int, status: str, at: datetime, error: str = "") -> None:
        await self.mark_many([row_id], status, at, error)

    async def mark_many(self, row_ids: list[int], status: str, at: datetime, error: str = "") -> None:
        if not row_ids:
            return
        params = {"b_ids": row_ids, "b_status": status, "b_updated_at": at, "b_last_error": error}
        await self.session.exec(_MARK, params=params)

    async def confirm_delivered(self, idempotency_key: str, at: datetime) -> ScheduledMessage | None:
        """A row given up as "delivery unknown" turned out delivered (its echo came back)."""
        query = select(ScheduledMessage).where(ScheduledMessage.idempotency_key == idempotency_key)
        row = (await self.session.exec(query)).first()
        if row is None or row.status != "failed" or DELIVERY_UNKNOWN not in row.last_error:
            return None
        row.status, row.updated_at, row.last_error = "sent", at, "delivered (confirmed by its echo)"
        return row

    async def defer(self, row_id: int, until: datetime, at: datetime, reason: str) -> None:
        """Back to pending, due later (quiet hours, caps, pacing)."""
        row = await self.session.get(ScheduledMessage, row_id)
        if row is not None:
            row.status, row.due_at, row.updated_at, row.last_error = (
                "pending",
                until,
                at,
                f"deferred: {reason}",
            )

    async def pending_for_customer(self, customer_id: int) -> list[ScheduledMessage]:
        query = (
            select(ScheduledMessage)
            .where(ScheduledMessage.customer_id == customer_id, ScheduledMessage.status == "pending")
            .order_by(col(ScheduledMessage.due_at))
        )
        return list((await self.session.exec(query)).all())

    async def cancel_for_customer(self, customer_id: int, at: datetime, reason: str) -> int:
        return await self.set_status_for_customer(
            customer_id, from_statuses=("pending",), to_status="cancelled", at=at, reason=reason
        )
