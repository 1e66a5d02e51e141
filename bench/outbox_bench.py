"""Outbox at scale: 1,000,000 pending rows in SQLite, beside 1,000,000 sent messages in the log.

    python bench/outbox_bench.py [--rows 1000000] [--history 1000000] [--due 2000] [--batch 1 16]
                                 [--statements]

Measures (1) startup: open the database, run migrations, settle claimed rows (recovery looks for
sends left under way), find the next due time; (2) dispatching due rows through the real
Dispatcher and Messenger with a transport that does nothing, so the time per message is the
database work (claim, outgoing log, mark sent),
split into the time spent inside SQLite and the rest (thread hops, SQLAlchemy, our code),
once per dispatch batch size (``[dispatch] batch_size``: messages per durable commit).
Both wall time and the process's CPU time (every thread) are reported; on a shared machine compare
the ratios printed at the end, measured in the same run: each batch size against the first one
(``batch_size = 1`` by default) and the time per message against the time inside SQLite (the
floor: what the database itself needs). ``--statements`` also counts, per message, the SQL
statements, commits and hops to another thread (aiosqlite's, the hot units' commit thread).
Targets: startup under a second (issue 5); at most 1 ms per message with the default batch (issue 20).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlmodel.ext.asyncio.session import AsyncSession

import storage.db
from bot.clock import VirtualClock
from bot.services.messenger import Messenger
from bot.services.outbox import Composed, Dispatcher
from storage.db import Database
from storage.models import Customer, ScheduledMessage


class SQLiteTimer:
    """Adds up the time spent inside sqlite3 calls: the database's own work, apart from the
    event-loop hops and ORM code around it. aiosqlite's worker threads' calls, and the hot
    units' (storage/hot_session.py): their statements, from SQLAlchemy's cursor events (a few
    microseconds of SQLAlchemy each included; rows fetched after the first are left out), and
    their work on the commit thread (a durable commit once the disk was found slow, with
    SQLAlchemy's bookkeeping). Left out: a hot unit's BEGIN and its commits on the loop (relaxed
    ones, and durable ones while the disk is fast). An approximation of the floor, not the same
    measure as before hot sessions."""

    def __init__(self, db: Database | None = None) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        hot = getattr(db, "_hot", None) if db is not None else None  # None: before hot sessions
        if hot is not None:
            self._time_hot(hot)
        original = aiosqlite.core.Connection._execute
        timer = self

        async def timed_execute(connection: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            def timed() -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    with timer._lock:
                        timer.seconds += time.perf_counter() - started

            return await original(connection, timed)

        aiosqlite.core.Connection._execute = timed_execute  # type: ignore[method-assign]

    def _time_hot(self, hot: Any) -> None:
        started: list[float] = []

        def before(*_: Any) -> None:
            started.append(time.perf_counter())

        def after(*_: Any) -> None:
            spent = time.perf_counter() - started.pop()
            with self._lock:
                self.seconds += spent

        for engine in hot.engines:
            event.listen(engine, "before_cursor_execute", before)
            event.listen(engine, "after_cursor_execute", after)
        on_thread = hot.on_thread

        async def timed_on_thread(work: Any) -> Any:
            def timed() -> Any:
                began = time.perf_counter()
                try:
                    return work()
                finally:
                    with self._lock:
                        self.seconds += time.perf_counter() - began

            return await on_thread(timed)

        hot.on_thread = timed_on_thread


class RoundTrips:
    """Counts SQL statements (SQLAlchemy's ``before_cursor_execute``, plus the dispatcher's own
    per-send writes, which bypass SQLAlchemy: each is a statement and a commit), commits and hops
    to another thread. Installed after :class:`SQLiteTimer`, so every hop is counted once."""

    def __init__(self, db: Database) -> None:
        self.statements = self.hops = self.commits = 0
        original = aiosqlite.core.Connection._execute
        counter = self

        async def counted(connection: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            counter.hops += 1
            if getattr(fn, "__name__", "") == "commit":
                counter.commits += 1
            return await original(connection, fn, *args, **kwargs)

        aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
        hot = getattr(db, "_hot", None)  # the hot units' commits and waits: a hop each
        if hot is not None:
            on_thread = hot.on_thread

            async def counted_on_thread(work: Any) -> Any:
                counter.hops += 1
                return await on_thread(work)

            hot.on_thread = counted_on_thread
            for engine in hot.engines:
                event.listen(engine, "commit", self._committed)
        writer = getattr(storage.db, "_SQLiteWriter", None)  # None: code from before issue 20
        if writer is not None:
            write = writer.execute

            async def counted_write(self: Any, statement: Any, params: Any) -> None:
                counter.statements += 1
                counter.commits += 1
                await write(self, statement, params)

            writer.execute = counted_write

        def statement(*_: Any) -> None:
            counter.statements += 1

        for engine in db.sync_engines():
            event.listen(engine, "before_cursor_execute", statement)

    def _committed(self, *_: Any) -> None:
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.hops = self.commits = 0


class NullTransport:
    account_id = "bench"
    self_id = "bench-self"

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        return None


class KeyComposer:
    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "customer rows always carry their customer"
        return Composed(customer.wechat_id, row.idempotency_key)


def fill(path: Path, rows: int, due: int, now: datetime, history: int) -> None:
    """``rows`` pending rows; row i < ``due`` falls due i seconds after ``now`` - 1 day, the
    rest are due in the coming days. ``history`` messages sent earlier fill the outgoing log."""
    now = now.replace(tzinfo=None)
    con = sqlite3.connect(path)
    con.execute("INSERT INTO account VALUES ('bench', 'n', 'r', '{}', NULL, ?, ?)", (now, now))
    con.execute(
        "INSERT INTO customer (id, account_id, wechat_id, display_name, remark, source_channel, stage, "
        "added_at) VALUES (1, 'bench', 'wx', '', '', '', 'stranger', ?)",
        (now,),
    )
    batch = []
    for i in range(rows):
        at = (
            now - timedelta(days=1) + timedelta(seconds=i)
            if i < due
            else now + timedelta(days=1 + i % 30, seconds=i)
        )
        batch.append(
            (
                "bench",
                1,
                "bulk",
                "bulk",
                str(i),
                "-",
                "{}",
                at,
                at + timedelta(days=2),
                "pending",
                0,
                None,
                "",
                f"bench-{i}",
                now,
                now,
            )
        )
        if len(batch) == 50_000:
            con.executemany(
                "INSERT INTO scheduled_message (account_id, customer_id, kind, sequence, step, template, "
                "context, due_at, not_after, status, attempts, claimed_at, last_error, idempotency_key, "
                "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                batch,
            )
            batch.clear()
    if batch:
        con.executemany(
            "INSERT INTO scheduled_message (account_id, customer_id, kind, sequence, step, template, "
            "context, due_at, not_after, status, attempts, claimed_at, last_error, idempotency_key, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
    con.executemany(
        "INSERT INTO outgoing_message (account_id, customer_id, conversation_id, kind, text, "
        "idempotency_key, status, error, created_at, sent_at, attempt_group) "
        "VALUES ('bench', 1, 'wx', 'bulk', 'an earlier message', ?, 'sent', '', ?, ?, ?)",
        ((f"history-{i}", now, now, f"old-boot/{i // 16}") for i in range(history)),
    )
    con.commit()
    con.close()


async def main(rows: int, history: int, due: int, batches: list[int], statements: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
        setup = Database(url)
        await setup.migrate()
        await setup.close()
        t0 = time.perf_counter()
        start = datetime.now(UTC)
        fill(path, rows, due * len(batches), start, history)
        took = time.perf_counter() - t0
        print(
            f"filled {rows:,} pending rows ({due * len(batches):,} due) and {history:,} sent ones "
            f"in {took:.1f} s"
        )

        t0 = time.perf_counter()
        db = Database(url)
        await db.migrate()
        clock = VirtualClock(start - timedelta(days=1))
        messenger = Messenger(db, clock, {"bench": NullTransport()})  # type: ignore[dict-item]

        dispatcher = Dispatcher(db, clock, messenger, {"bulk": KeyComposer()})
        await dispatcher.recover()
        next_due = await dispatcher.next_due_at()
        startup = time.perf_counter() - t0
        print(f"startup (open, migrate, recover, next due {next_due:%H:%M}): {startup * 1000:.0f} ms")

        timer = SQLiteTimer(db)
        trips = RoundTrips(db) if statements else None
        measured: list[tuple[int, float, float, float]] = []  # batch, wall, CPU, inside SQLite (ms/message)
        for run, batch in enumerate(batches, start=1):
            dispatcher.batch_size = batch
            # this run's share of the due rows: those due by now (row i is due at start - 1 day + i s)
            clock.set(start - timedelta(days=1) + timedelta(seconds=run * due - 0.5))
            timer.seconds = 0.0
            if trips is not None:
                trips.reset()
            t0, cpu0 = time.perf_counter(), time.process_time()
            sent = await dispatcher.run_due()
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            per_message = elapsed / sent * 1000
            cpu_per_message = cpu / sent * 1000
            inside = timer.seconds / sent * 1000
            measured.append((batch, per_message, cpu_per_message, inside))
            print(
                f"batch_size {batch}: dispatched {sent:,} due messages in {elapsed:.2f} s: "
                f"{per_message:.3f} ms per message (CPU {cpu_per_message:.3f} ms)"
            )
            print(f"  inside SQLite (statements, commits): {inside:.3f} ms per message;")
            print(f"  thread hops, SQLAlchemy and our code: {per_message - inside:.3f} ms")
            if trips is not None:
                print(
                    f"  per message: {trips.statements / sent:.2f} SQL statements, "
                    f"{trips.commits / sent:.2f} commits, {trips.hops / sent:.2f} hops to another thread"
                )
        print(
            "  (claim, render, outgoing log before and after the send, mark sent; the transport does nothing)"
        )
        base_batch, base_wall, base_cpu, _ = measured[0]
        print("ratios in this run:")
        for batch, wall, cpu_ms, inside in measured:
            versus = (
                ""
                if batch == base_batch
                else f", {wall / base_wall:.2f}x the time of batch_size {base_batch} "
                f"(CPU {cpu_ms / base_cpu:.2f}x)"
            )
            print(f"  batch_size {batch}: {wall / inside:.1f}x the time inside SQLite{versus}")
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=1_000_000, help="sent messages in the log")
    parser.add_argument("--due", type=int, default=2000, help="due messages per batch size")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--statements", action="store_true", help="count statements, commits and hops")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.history, args.due, args.batch, args.statements))
