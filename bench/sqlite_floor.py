"""The floor under the outbox's per-message cost: what one small write transaction costs on SQLite
through each way of reaching it from the event loop.

    python bench/sqlite_floor.py [--n 2000]

The dispatcher writes at least twice per message (the outgoing-log row before the send, "sent"
after it) so that a crash never causes a second send; this shows what those writes cost:
(1) SQLAlchemy's async engine over aiosqlite (what salesbot uses: every statement, cursor and
commit is a hop to aiosqlite's thread and back), (2) the same transaction as one synchronous unit
of work in a worker thread (one hop per transaction), (3) plain sqlite3 on the loop thread.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

SETUP = [
    "PRAGMA journal_mode=WAL",
    "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, status TEXT, n INTEGER)",
    "INSERT OR IGNORE INTO t VALUES (1, 'pending', 0)",
]
UPDATE = "UPDATE t SET status = 'sent', n = n + 1 WHERE id = 1"


def per_call_ms(started: float, n: int) -> float:
    return (time.perf_counter() - started) / n * 1000


async def async_engine(path: Path, n: int) -> float:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    started = time.perf_counter()
    for _ in range(n):
        async with engine.begin() as connection:
            await connection.execute(sa.text(UPDATE))
    result = per_call_ms(started, n)
    await engine.dispose()
    return result


async def worker_thread(path: Path, n: int) -> float:
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)

    def unit_of_work() -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(UPDATE)
        connection.execute("COMMIT")

    started = time.perf_counter()
    for _ in range(n):
        await asyncio.to_thread(unit_of_work)
    result = per_call_ms(started, n)
    connection.close()
    return result


def loop_thread(path: Path, n: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    started = time.perf_counter()
    for _ in range(n):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(UPDATE)
        connection.execute("COMMIT")
    result = per_call_ms(started, n)
    connection.close()
    return result


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "floor.db"
        setup = sqlite3.connect(path)
        for statement in SETUP:
            setup.execute(statement)
        setup.commit()
        setup.close()
        print(f"one write transaction (one-row UPDATE), mean of {n:,}:")
        print(f"  SQLAlchemy async engine + aiosqlite:     {await async_engine(path, n):.3f} ms")
        print(f"  sqlite3 unit of work in a worker thread: {await worker_thread(path, n):.3f} ms")
        print(f"  sqlite3 on the event loop thread:        {loop_thread(path, n):.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    asyncio.run(main(parser.parse_args().n))
