"""Crash safety: a real dispatcher process is SIGKILLed again and again while sending thousands of
due messages, then restarted until done. No message may reach the platform twice, and every one
must end sent, or failed with a reason (a send interrupted mid-flight is never retried blindly)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col, select

from bot.transport.local_puppet import TRANSCRIPT_ENV
from storage.db import Database
from storage.models import Account, Customer, Event, ScheduledMessage
from tests.cli_process import Bot, kill_point, wait_for
from tests.conftest import ROOT, write_config

MESSAGES = 2000
KILLS = 6


async def prepare(db: Database) -> None:
    await db.migrate()
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(Account(id="crash", nickname="n", role="r", created_at=now, updated_at=now))
        session.add(Customer(id=1, account_id="crash", wechat_id="wx_crash", stage="stranger", added_at=now))
    table = ScheduledMessage.__table__  # type: ignore[attr-defined]
    due = now - timedelta(minutes=1)
    async with db.transaction() as session:
        await session.exec(
            sa.insert(table),
            params=[
                {
                    "account_id": "crash",
                    "customer_id": 1,
                    "kind": "bulk",
                    "sequence": "bulk",
                    "step": str(i),
                    "template": "-",
                    "context": {},
                    "due_at": due,
                    "not_after": now + timedelta(days=1),
                    "status": "pending",
                    "attempts": 0,
                    "last_error": "",
                    "idempotency_key": f"bulk-{i:05d}",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(MESSAGES)
            ],
        )


def worker(url: str, sink: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", url, str(sink)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def delivered(sink: Path) -> Counter[str]:
    return Counter(line for line in sink.read_text().splitlines() if line) if sink.exists() else Counter()


async def final_rows(url: str) -> tuple[list[ScheduledMessage], int]:
    """Every scheduled row, and how many ``message_out`` events (digests count these) were logged."""
    db = Database(url)
    async with db.transaction() as session:
        rows = list((await session.exec(select(ScheduledMessage))).all())
        events = (await session.exec(select(sa.func.count()).where(Event.kind == "message_out"))).one()
    await db.close()
    return rows, events


async def prepare_new(url: str) -> None:
    db = Database(url)
    await prepare(db)
    await db.close()


def test_sigkilled_dispatcher_never_sends_twice_and_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    sink = tmp_path / "delivered.txt"
    asyncio.run(prepare_new(url))
    rng = random.Random(1)
    killed_mid_run = 0
    for kill in range(KILLS):
        target = kill_point(rng, sum(delivered(sink).values()), MESSAGES, KILLS - kill)
        process = worker(url, sink)
        # kill it once it has delivered a random number of this run's share
        wait_for(lambda: sum(delivered(sink).values()), target, process, 60)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed_mid_run += 1
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()  # else its pipe is closed by the garbage collector, with a ResourceWarning
    final = worker(url, sink)
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output
    assert killed_mid_run >= KILLS - 1, "the worker must really be killed while sending"

    counts = delivered(sink)
    assert [key for key, n in counts.items() if n > 1] == [], "a message reached the platform twice"
    rows, events = asyncio.run(final_rows(url))
    assert len(rows) == MESSAGES
    statuses = Counter(row.status for row in rows)
    assert set(statuses) <= {"sent", "failed"}, statuses
    for row in rows:
        if row.status == "sent":
            assert counts[row.idempotency_key] == 1, (
                f"{row.idempotency_key} marked sent but not delivered once"
            )
        else:
            assert "delivery unknown" in row.last_error, row.last_error
            assert counts[row.idempotency_key] <= 1
    # the dispatcher reserves 16 messages per durable commit, yet a kill leaves only the one send
    # under way in doubt: the others of its batch are known sent or known untried
    assert statuses["failed"] <= killed_mid_run, "at most the one in-flight message per kill is in doubt"
    assert events == statuses["sent"], "each delivered message is logged once, crash or not"
    assert sum(counts.values()) >= MESSAGES - statuses["failed"]


RUN_MESSAGES = 600
RUN_KILLS = 4


async def prepare_console_rows(url: str, count: int) -> None:
    """``count`` console alerts due now for the config's account (they need no customer contact,
    which the local puppet forgets at every restart)."""
    db = Database(url)
    await db.migrate()
    now = datetime.now(UTC)
    async with db.transaction() as session:
        session.add(Account(id="demo", nickname="n", role="r", created_at=now, updated_at=now))
        for i in range(count):
            session.add(
                ScheduledMessage(
                    account_id="demo",
                    kind="alert",
                    sequence="alert",
                    step="-",
                    template="-",
                    context={"text": f"bulk-{i:05d}"},
                    due_at=now - timedelta(minutes=1),
                    not_after=now + timedelta(days=1),
                    status="pending",
                    idempotency_key=f"demo:alert:bulk-{i:05d}",
                    created_at=now,
                    updated_at=now,
                )
            )
    await db.close()


async def bulk_rows(url: str) -> list[ScheduledMessage]:
    db = Database(url)
    bulk = col(ScheduledMessage.idempotency_key).like("demo:alert:bulk-%")
    try:
        async with db.transaction() as session:
            return list((await session.exec(select(ScheduledMessage).where(bulk))).all())
    finally:
        await db.close()


def test_sigkilled_salesbot_run_never_sends_twice_and_leaves_one_send_in_doubt_per_kill(
    tmp_path: Path,
) -> None:
    """The real CLI (``salesbot run`` on the local puppet, whose transcript file says what reached
    the "platform"), SIGKILLed again and again while sending: nothing goes out twice and each kill
    leaves at most one send in doubt. (That overlapping dispatch calls cannot widen the doubt is
    shown directly in tests/test_dispatch_batches.py: here APScheduler rarely overlaps them.)"""
    write_config(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'salesbot.db'}"
    asyncio.run(prepare_console_rows(url, RUN_MESSAGES))
    transcript = tmp_path / "transcript.txt"
    env = {TRANSCRIPT_ENV: str(transcript)}

    def bulk_delivered() -> Counter[str]:
        lines = transcript.read_text(encoding="utf-8").splitlines() if transcript.exists() else []
        return Counter(
            text for _, _, text in (line.partition("\t") for line in lines) if text.startswith("bulk-")
        )

    rng = random.Random(2)
    kills = 0
    for kill in range(RUN_KILLS):
        target = kill_point(rng, sum(bulk_delivered().values()), RUN_MESSAGES, RUN_KILLS - kill)
        bot = Bot(tmp_path, env=env, wait=False)
        wait_for(lambda: sum(bulk_delivered().values()), target, bot.process, 30)
        if sum(bulk_delivered().values()) < RUN_MESSAGES:
            kills += 1
        bot.kill()
    # the last run finishes the job; it is stopped only once up (the killed runs may have sent
    # everything already: a stop while it still imports would read as a crash)
    bot = Bot(tmp_path, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(row.status in ("sent", "failed") for row in asyncio.run(bulk_rows(url))):
            break
        time.sleep(0.5)
    output = bot.stop()
    assert "Traceback" not in output, output
    assert kills >= RUN_KILLS - 1, "the process must really be killed while sending"

    counts = bulk_delivered()
    assert [text for text, n in counts.items() if n > 1] == [], "a message reached the platform twice"
    rows = asyncio.run(bulk_rows(url))
    statuses = Counter(row.status for row in rows)
    assert set(statuses) <= {"sent", "failed"}, statuses
    for row in rows:
        text = str(row.context["text"])
        if row.status == "sent":
            assert counts[text] == 1, f"{text} marked sent but not delivered once"
        else:
            assert "delivery unknown" in row.last_error, row.last_error
    assert statuses["failed"] <= kills, "at most the one send under way per kill is in doubt"
