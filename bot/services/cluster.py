"""Processes sharing one database (issue 19).

Every process registers a row and renews it (the heartbeat). On SQLite that row keeps the file
single-process: a second process refuses to start while the first is alive. On PostgreSQL each
account is owned by at most one live process through a lease: a process takes free or expired
accounts up to a fair share (or the explicit ``--accounts`` list), runs only their transports,
dispatches only their rows, and releases them on stop. A holder is dead when its lease expired or,
on this host, its pid is gone (a SIGKILL is noticed at once, not after ``lease_seconds``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.clock import Clock
from bot.errors import SalesbotError
from storage.db import Database
from storage.models import AccountLease, ClusterProcess
from storage.queries import cluster as queries

log = logging.getLogger("salesbot")

HOST = socket.gethostname()


class AlreadyRunning(SalesbotError):
    """Another live process uses this SQLite database."""


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (another user's counts as alive)."""
    if sys.platform == "win32":
        return True  # no signal 0 there: rely on the heartbeat's expiry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@dataclass(frozen=True)
class Change:
    """What a heartbeat changed: accounts this process took, accounts it lost, and accounts it
    holds beyond its fair share (the caller stops them, then :meth:`Cluster.release`)."""

    gained: frozenset[str]
    lost: frozenset[str]
    surplus: frozenset[str] = frozenset()


class Cluster:
    """This process's membership: its process row and, on PostgreSQL, its account leases."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        accounts: Sequence[str],
        *,
        lease_seconds: float,
        only: Collection[str] | None = None,
        tz: ZoneInfo | None = None,
        host: str = HOST,
        pid: int | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.accounts = list(accounts)
        self.only = None if only is None else [a for a in self.accounts if a in set(only)]
        self.lease = timedelta(seconds=lease_seconds)
        self.tz = tz
        self.host = host
        self.pid = os.getpid() if pid is None else pid
        self.id = uuid.uuid4().hex
        # SQLite: one process owns everything; PostgreSQL: accounts by lease
        self.shared = not db.is_sqlite
        self.owned: set[str] = set()
        # account -> taken_at of the lease this process holds (its fencing token, see holds());
        # kept through let_go until the lease is released, lost or left
        self.taken: dict[str, datetime] = {}
        self.joined = False
        # wanted accounts nobody live held at the last look, beyond what this process took
        self.left_free = 0
        self.renewed_at: datetime | None = None
        # accounts a renewal found lost, for the next heartbeat's Change
        self.lost_meanwhile: set[str] = set()

    def ownership(self) -> frozenset[str] | None:
        """Accounts this process may run and dispatch; None: all of them (SQLite)."""
        return frozenset(self.owned) if self.shared else None

    def claim_check(self) -> tuple[str, datetime] | None:
        """What the dispatcher's claim re-checks in the database: (this owner, real time now);
        None on SQLite (no leases)."""
        return (self.id, self.clock.now()) if self.shared else None

    def token(self, account_id: str) -> datetime | None:
        """The lease this process holds on ``account_id`` (its ``taken_at``): the fencing token a
        send is reserved under. None: not held, or SQLite."""
        return self.taken.get(account_id) if self.shared else None

    async def holds(self, account_id: str, token: datetime | None) -> bool:
        """Whether this process still holds the lease ``token`` names, asked right before each
        send: the fence that keeps a process paused past its lease (SIGSTOP, a VM frozen) from
        sending what it had reserved once another process took the account over. A lease taken
        over, or released and taken again since the reservation, fails it. While the last renewal
        is fresh by this process's clock nobody can have taken the lease (a third of its time is
        left, for clock skew): no database round trip; else the lease row is read. SQLite: always
        (one process)."""
        if not self.shared:
            return True
        if token is not None and self.taken.get(account_id) == token:
            now = self.clock.now()
            if self.renewed_at is not None and now < self.renewed_at + self.lease * 2 / 3:
                return True
            async with self.db.transaction() as session:
                held = await queries.holds(session, account_id, self.id, token)
        else:
            held = False
        if not held:
            log.warning("account %s: lease lost while paused; not sending its reserved messages", account_id)
        return held

    def owns(self, account_id: str) -> bool:
        return not self.shared or account_id in self.owned

    def owns_any(self) -> bool:
        return not self.shared or bool(self.owned)

    def readiness(self) -> str:
        """ "" when this process is doing its part: it owns an account, or every account has a
        live owner (a standby); else why not."""
        if not self.joined:
            return "not started yet"
        if self.owns_any() or self.left_free == 0:
            return ""
        return f"{self.left_free} account(s) have no owner yet"

    def _dead(self, host: str, pid: int, expires_at: datetime, now: datetime) -> bool:
        if expires_at <= now:
            return True
        # same host, another pid that no longer exists: killed; the same pid is this process
        # (several members in one process only happen in tests, and count as alive)
        return host == self.host and pid != self.pid and not pid_alive(pid)

    async def join(self) -> frozenset[str]:
        """Register this process, then take its accounts (PostgreSQL). On SQLite, raises
        :class:`AlreadyRunning` when another live process uses the file."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            await queries.register(session, self._row(now))  # first: SQLite's write lock orders racing starts
            others = [p for p in await queries.processes(session) if p.id != self.id]
            dead = [p for p in others if self._dead(p.host, p.pid, p.expires_at, now)]
            live = [p for p in others if p not in dead]
            blocking = [p for p in live if not (p.host == self.host and p.pid == self.pid)]
            if blocking and not self.shared:
                raise AlreadyRunning(self._refusal(blocking[0], now))
            await queries.remove_processes(session, [p.id for p in dead])
        self.joined, self.renewed_at = True, now
        if self.shared:
            await self._take(now)
        return frozenset(self.owned)

    def _row(self, now: datetime) -> ClusterProcess:
        """This process as registered (again) at ``now``."""
        return ClusterProcess(
            id=self.id,
            host=self.host,
            pid=self.pid,
            started_at=now,
            heartbeat_at=now,
            expires_at=now + self.lease,
        )

    def renewal_due(self) -> bool:
        """Whether a heartbeat is due (a third of the lease since the last): a dispatch renews
        first, so leases never lapse between timer ticks or on a simulated clock."""
        if not self.joined or self.renewed_at is None:
            return False
        return self.clock.now() >= self.renewed_at + self.lease / 3

    def _refusal(self, other: ClusterProcess, now: datetime) -> str:
        since = other.started_at.astimezone(self.tz) if self.tz else other.started_at
        where = self.db.path or "this database"
        age = max(0, round((now - other.heartbeat_at).total_seconds()))
        return (
            f"another salesbot process is using {where}: pid {other.pid} on host {other.host}, "
            f"running since {since:%Y-%m-%d %H:%M:%S %Z} (last heartbeat {age} s ago); stop it first, "
            "or use PostgreSQL (database.url) to run several processes"
        )

    async def heartbeat(self) -> Change:
        """Renew this process and its leases; take accounts left free or expired up to the fair
        share. Returns what changed, so the caller starts or stops transports."""
        before = set(self.owned)
        await self.renew()
        lost, self.lost_meanwhile = (before - self.owned) | self.lost_meanwhile, set()
        surplus: frozenset[str] = frozenset()
        if self.shared:
            share = await self._take(self.clock.now())
            if len(self.owned) > share:  # a process joined: hand accounts over, newest taken last
                surplus = frozenset(sorted(self.owned, key=self.accounts.index)[share:])
        return Change(frozenset(self.owned - before), frozenset(lost), surplus)

    async def renew(self) -> None:
        """Renew this process and the leases it still holds, taking nothing: what a process
        starting its transports (logins may take long) runs meanwhile, and the first half of
        :meth:`heartbeat`. Accounts lost are reported by the next heartbeat."""
        now = self.clock.now()
        before = set(self.owned)
        async with self.db.transaction() as session:
            if not await queries.renew_process(session, self.id, now, now + self.lease):
                # judged dead (a long pause). SQLite: if another process started meanwhile, this
                # one must stop; PostgreSQL: register again, the leases tell what is still ours
                if not self.shared:
                    for other in await queries.processes(session):
                        if other.id != self.id and not self._dead(
                            other.host, other.pid, other.expires_at, now
                        ):
                            raise AlreadyRunning(
                                "this process was paused longer than [cluster] lease_seconds and "
                                + self._refusal(other, now).replace("stop it first", "stopping this one")
                            )
                await queries.register(session, self._row(now))
            if self.shared:
                self.owned = await queries.renew_leases(session, self.id, now, now + self.lease)
            dead = [
                p.id
                for p in await queries.processes(session)
                if p.id != self.id and self._dead(p.host, p.pid, p.expires_at, now)
            ]
            await queries.remove_processes(session, dead)
        self.renewed_at = now
        lost = before - self.owned
        for account_id in lost:
            self.taken.pop(account_id, None)
        if lost:
            log.warning("lost the lease of account(s) %s to another process", ", ".join(sorted(lost)))
            self.lost_meanwhile |= lost

    async def _take(self, now: datetime) -> int:
        """Take free or expired accounts, up to a fair share of the live processes (or the
        explicit list); returns that share. Each take is atomic: an insert that loses a race, or
        a compare-and-swap on the dead holder's exact lease, so two processes never both own an
        account."""
        async with self.db.transaction() as session:
            processes = await queries.processes(session)
            live = sum(1 for p in processes if not self._dead(p.host, p.pid, p.expires_at, now))
            leases = {lease.account_id: lease for lease in await queries.leases(session)}
            wanted = self.only if self.only is not None else self.accounts
            share = len(wanted) if self.only is not None else math.ceil(len(wanted) / max(1, live))
            for account_id in wanted:
                if len(self.owned) >= share:
                    break
                if account_id in self.owned:
                    continue
                mine = AccountLease(
                    account_id=account_id,
                    owner=self.id,
                    host=self.host,
                    pid=self.pid,
                    taken_at=now,
                    heartbeat_at=now,
                    expires_at=now + self.lease,
                )
                held = leases.get(account_id)
                if held is None:
                    taken = await queries.take_free(session, mine)
                elif held.owner == self.id:
                    taken = True
                    mine = held
                elif self._dead(held.host, held.pid, held.expires_at, now):
                    taken = await queries.take_over(session, mine, held.owner, held.expires_at)
                    if taken:
                        log.warning(
                            "took account %s over from a dead process (pid %d on %s)",
                            account_id,
                            held.pid,
                            held.host,
                        )
                else:
                    taken = False
                if taken:
                    self.owned.add(account_id)
                    self.taken[account_id] = mine.taken_at
            self.left_free = sum(
                1
                for account_id in wanted
                if account_id not in self.owned
                and (
                    (held := leases.get(account_id)) is None
                    or self._dead(held.host, held.pid, held.expires_at, now)
                )
            )
        return share

    def let_go(self, accounts: Collection[str]) -> None:
        """Stop dispatching ``accounts`` (first step of handing them over; see :meth:`release`)."""
        self.owned -= set(accounts)

    async def release(self, accounts: Collection[str]) -> None:
        """Give accounts up (their transports are stopped): another process may take them now."""
        self.let_go(accounts)
        async with self.db.transaction() as session:
            await queries.release_leases(session, self.id, accounts)
        for account_id in accounts:
            self.taken.pop(account_id, None)

    async def leave(self) -> None:
        """Release every lease and remove this process's row (a clean stop)."""
        if not self.joined:
            return
        async with self.db.transaction() as session:
            await queries.release_leases(session, self.id)
            await queries.remove_processes(session, [self.id])
        self.owned.clear()
        self.taken.clear()
        self.joined = False


async def describe(db: Database, now: datetime, accounts: Sequence[str], tz: ZoneInfo) -> list[str]:
    """``salesbot cluster``: the processes, the leases and who runs each configured account."""
    async with db.transaction() as session:
        processes = await queries.processes(session)
        leases = {lease.account_id: lease for lease in await queries.leases(session)}

    def age(at: datetime) -> str:
        return f"{max(0, round((now - at).total_seconds()))} s ago"

    lines = [f"processes ({len(processes)}):"]
    for p in processes:
        state = "alive" if p.expires_at > now else "expired (dead or paused)"
        since = p.started_at.astimezone(tz)
        lines.append(
            f"  pid {p.pid} on {p.host}  since {since:%Y-%m-%d %H:%M:%S}  "
            f"heartbeat {age(p.heartbeat_at)}  {state}  id {p.id[:8]}"
        )
    pids = {p.id: f"pid {p.pid} on {p.host}" for p in processes}
    lines.append(f"accounts ({len(accounts)}):")
    for account_id in accounts:
        lease = leases.get(account_id)
        if lease is None:
            lines.append(f"  {account_id}: no lease (free, or SQLite: the running process has it)")
            continue
        state = "" if lease.expires_at > now else "  EXPIRED: the next process to look takes it"
        owner = pids.get(lease.owner, f"pid {lease.pid} on {lease.host} (gone)")
        lines.append(
            f"  {account_id}: {owner}  lease renewed {age(lease.heartbeat_at)}, "
            f"expires in {max(0, round((lease.expires_at - now).total_seconds()))} s{state}"
        )
    for account_id in sorted(set(leases) - set(accounts)):
        lines.append(
            f"  {account_id}: leased by {pids.get(leases[account_id].owner, 'a gone process')} "
            "(not in this config)"
        )
    return lines
