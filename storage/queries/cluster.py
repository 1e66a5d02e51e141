"""The cluster's rows: running processes and account leases (see bot/services/cluster.py)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import AccountLease, ClusterProcess
from storage.repositories import _insert_ignoring_conflict, _rowcount, _table


async def processes(session: AsyncSession) -> list[ClusterProcess]:
    query = select(ClusterProcess).order_by(col(ClusterProcess.started_at))
    return list((await session.exec(query)).all())


async def register(session: AsyncSession, process: ClusterProcess) -> None:
    session.add(process)
    await session.flush()  # takes SQLite's write lock now: a racing second process waits for it


async def renew_process(session: AsyncSession, process_id: str, at: datetime, expires_at: datetime) -> bool:
    """Extend a process's heartbeat; False when its row is gone (another process judged it dead)."""
    table = _table(ClusterProcess)
    result = await session.exec(
        sa.update(table).where(table.c.id == process_id).values(heartbeat_at=at, expires_at=expires_at)
    )
    return _rowcount(result) > 0


async def remove_processes(session: AsyncSession, process_ids: Collection[str]) -> None:
    if process_ids:
        table = _table(ClusterProcess)
        await session.exec(sa.delete(table).where(table.c.id.in_(list(process_ids))))


async def leases(session: AsyncSession) -> list[AccountLease]:
    query = select(AccountLease).order_by(col(AccountLease.account_id))
    return list((await session.exec(query)).all())


async def take_free(session: AsyncSession, lease: AccountLease) -> bool:
    """Insert ``lease`` unless the account has one; whether it was taken."""
    statement = _insert_ignoring_conflict(session, _table(AccountLease), lease.model_dump(), ["account_id"])
    return _rowcount(await session.exec(statement)) > 0


async def take_over(
    session: AsyncSession, lease: AccountLease, holder: str, holder_expires: datetime
) -> bool:
    """Replace the lease of a holder judged dead, only if it is still exactly that lease (a holder
    that renewed meanwhile keeps it): compare-and-swap on owner and expiry."""
    table = _table(AccountLease)
    result = await session.exec(
        sa.update(table)
        .where(
            table.c.account_id == lease.account_id,
            table.c.owner == holder,
            table.c.expires_at == holder_expires,
        )
        .values(**lease.model_dump(exclude={"account_id"}))
    )
    return _rowcount(result) > 0


async def renew_leases(session: AsyncSession, owner: str, at: datetime, expires_at: datetime) -> set[str]:
    """Extend every lease ``owner`` still holds; returns those accounts (one lost is missing)."""
    table = _table(AccountLease)
    result = await session.exec(
        sa.update(table)
        .where(table.c.owner == owner)
        .values(heartbeat_at=at, expires_at=expires_at)
        .returning(table.c.account_id)
    )
    return {str(row[0]) for row in result}


async def holds(session: AsyncSession, account_id: str, owner: str, taken_at: datetime) -> bool:
    """Whether ``owner`` still holds the lease on ``account_id`` it took at ``taken_at`` (the
    fencing token): a lease taken over, or released and taken again, no longer matches."""
    query = select(AccountLease.account_id).where(
        AccountLease.account_id == account_id, AccountLease.owner == owner, AccountLease.taken_at == taken_at
    )
    return (await session.exec(query)).first() is not None


async def release_leases(session: AsyncSession, owner: str, accounts: Collection[str] | None = None) -> None:
    table = _table(AccountLease)
    statement = sa.delete(table).where(table.c.owner == owner)
    if accounts is not None:
        statement = statement.where(table.c.account_id.in_(list(accounts)))
    await session.exec(statement)
