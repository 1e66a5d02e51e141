"""Tables. Every timestamp is stored in UTC; the configured zone is applied only when displaying.

Schema changes need a new Alembic revision in ``storage/migrations/versions`` (a test compares the
migrated schema with these models).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones, PostgreSQL gets the same values."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None if nullable else ..., sa_type=UTCDateTime, nullable=nullable, index=index)


def json_column() -> Any:
    return Field(default_factory=dict, sa_type=sa.JSON, nullable=False)


class Account(SQLModel, table=True):
    """A rep's work account. Profile comes from config and is refreshed at every start."""

    __tablename__ = "account"

    id: str = Field(primary_key=True, max_length=32)
    nickname: str
    role: str
    profile: dict[str, Any] = json_column()
    self_contact_id: str | None = None
    created_at: datetime = utc_column()
    updated_at: datetime = utc_column()


class Customer(SQLModel, table=True):
    __tablename__ = "customer"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "wechat_id", name="uq_customer_account_wechat"),
        sa.Index("ix_customer_account_stage", "account_id", "stage"),
        # the digest counts customers per lifecycle state
        sa.Index("ix_customer_account_lifecycle", "account_id", "lifecycle"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id")
    wechat_id: str
    display_name: str = ""
    remark: str = ""
    source_channel: str = ""
    stage: str
    added_at: datetime = utc_column()
    welcome_planned_at: datetime | None = utc_column(nullable=True)
    deleted_at: datetime | None = utc_column(nullable=True)
    # automation paused (opt-out or /pause); scheduled rows wait in status "paused"
    paused_at: datetime | None = utc_column(nullable=True)
    # the customer asked to be pushed less (a soft opt-out): countdowns and follow-ups wait as
    # "paused" and none are sent; aftercare continues. Cleared by /resume, /wrong or a new /countdown
    pushes_stopped_at: datetime | None = utc_column(nullable=True)
    last_inbound_at: datetime | None = utc_column(nullable=True)
    last_outbound_at: datetime | None = utc_column(nullable=True)
    # new | growing | mature | dormant | lost (bot/domain/lifecycle.py), kept by the daily sweep and
    # the customer's messages; each change is a ``lifecycle_changed`` event
    lifecycle: str = Field(default="new", sa_column_kwargs={"server_default": "new"})


class CustomerTag(SQLModel, table=True):
    __tablename__ = "customer_tag"
    __table_args__ = (sa.UniqueConstraint("customer_id", "group", "value", name="uq_customer_tag"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    group: str = ""  # "" for free-text tags
    value: str
    source: str  # manual | channel_rule | event
    added_by: str
    added_at: datetime = utc_column()


class StageChange(SQLModel, table=True):
    __tablename__ = "stage_change"
    __table_args__ = (sa.Index("ix_stage_change_customer_at", "customer_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    from_stage: str | None = None
    to_stage: str
    actor: str
    reason: str = ""
    at: datetime = utc_column(index=True)


class Note(SQLModel, table=True):
    __tablename__ = "note"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    text: str
    author: str
    at: datetime = utc_column()


class Event(SQLModel, table=True):
    """Everything that happened, inbound and outbound, for the digest and the audit trail.

    ``external_id`` holds the platform's id (message or friendship id) so replayed platform events
    are recognised and ignored.
    """

    __tablename__ = "event"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "kind", "external_id", name="uq_event_external"),
        sa.Index("ix_event_account_kind_at", "account_id", "kind", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id")
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    kind: str
    text: str = ""
    data: dict[str, Any] = json_column()
    external_id: str | None = None
    at: datetime = utc_column()


class OutgoingMessage(SQLModel, table=True):
    """One row per message the bot tried to send. The idempotency key makes a second send impossible."""

    __tablename__ = "outgoing_message"
    __table_args__ = (
        sa.Index("ix_outgoing_account_platform_id", "account_id", "platform_message_id"),
        # per-day counts for the daily caps and pacing
        sa.Index("ix_outgoing_account_kind_sent", "account_id", "kind", "sent_at"),
        sa.Index("ix_outgoing_customer_sent", "customer_id", "sent_at"),
        # matching the account's own messages coming back (self-echo) to what it sent
        sa.Index("ix_outgoing_account_conversation_created", "account_id", "conversation_id", "created_at"),
        # sends still under way (few): what recovery after a crash looks at, whatever the log's size.
        # PostgreSQL's index has the same WHERE (migration 0004; tests/test_storage.py checks both).
        # It is not declared here: ``postgresql_where`` imports PostgreSQL's dialect, ~2 MB, into
        # every SQLite bot, and Alembic's comparison does not read it (issue 20).
        sa.Index(
            "ix_outgoing_sending",
            "attempt_group",
            sqlite_where=sa.text("status = 'sending'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id")
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    conversation_id: str
    kind: str
    text: str
    idempotency_key: str = Field(unique=True)
    # sending | sent | failed (definitely not delivered) | unknown (the call broke off midway)
    status: str
    platform_message_id: str | None = None
    error: str = ""
    created_at: datetime = utc_column()
    sent_at: datetime | None = utc_column(nullable=True)
    # when the platform reported this message back as the account's own (puppets that echo)
    echoed_at: datetime | None = utc_column(nullable=True)
    # "<durability epoch>/<host>/<pid>/<batch>": sends the dispatcher reserved together and sends
    # in id order, writing each outcome before the next send; after a crash it tells the one send
    # in doubt from those never attempted (see Dispatcher.recover)
    attempt_group: str | None = None


class ScheduledMessage(SQLModel, table=True):
    """The durable outbox: planned messages, rendered from their template when they are sent."""

    __tablename__ = "scheduled_message"
    __table_args__ = (
        sa.Index("ix_scheduled_status_due", "status", "due_at"),
        sa.Index("ix_scheduled_customer_sequence", "customer_id", "sequence", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id")
    # None for rows addressed to no customer (a supervisor's digest); see ix_scheduled_customer_sequence
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    kind: str
    sequence: str
    step: str
    template: str
    context: dict[str, Any] = json_column()
    due_at: datetime = utc_column()
    not_after: datetime = utc_column()
    status: str  # pending | claimed | sent | cancelled | expired | failed | paused
    attempts: int = 0
    claimed_at: datetime | None = utc_column(nullable=True)
    last_error: str = ""
    idempotency_key: str = Field(unique=True)
    created_at: datetime = utc_column()
    updated_at: datetime = utc_column()


class ClusterProcess(SQLModel, table=True):
    """A running salesbot process on this database, renewed by its heartbeat: others see it (the
    ``cluster`` command, leases) and a second process on an SQLite file refuses to start."""

    __tablename__ = "cluster_process"

    id: str = Field(primary_key=True, max_length=64)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = utc_column()
    heartbeat_at: datetime = utc_column()
    expires_at: datetime = utc_column()


class AccountLease(SQLModel, table=True):
    """Which process owns an account (PostgreSQL, several processes): only the owner runs its
    transport and dispatches its rows. Taken when free or expired, renewed by the heartbeat."""

    __tablename__ = "account_lease"

    account_id: str = Field(primary_key=True, max_length=32)
    owner: str = Field(max_length=64, index=True)
    host: str = Field(max_length=255)
    pid: int
    taken_at: datetime = utc_column()
    heartbeat_at: datetime = utc_column()
    expires_at: datetime = utc_column()


metadata = SQLModel.metadata
