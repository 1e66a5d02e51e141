"""A burst of inbound events at once (issue 20): every one is stored exactly once.

SQLite has one writer. Before the in-process write lock, concurrent handlers queued on SQLite's own
lock, and one that waited longer than ``busy_timeout`` failed with "database is locked": the event
was logged and lost. Here the busy timeout is cut to a millisecond, so any two of this process's
transactions that still meet on SQLite's lock fail the test at once instead of after 10 s.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

import storage.db
from bot.config import Config
from bot.domain.kinds import Kind
from storage.models import Customer, Event, ScheduledMessage
from storage.retry import transient
from tests.conftest import MONDAY_10AM
from tests.harness import Harness

FRIENDS = 30  # then TEXTS_EACH texts from each, and one message the rep types in each chat
TEXTS_EACH = 3
TEXTS = ["多少钱？", "太贵了，便宜点吧", "好的，我想想", "什么时候能上课？", "谢谢"]


@pytest.fixture(autouse=True)
def _impatient_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.db, "BUSY_TIMEOUT_MS", 1)


async def test_a_burst_of_friend_requests_and_texts_loses_nothing(config: Config, db_url: str) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        handles = [f"b{n}" for n in range(FRIENDS)]
        for handle in handles:  # every request emitted before any is handled (pyee runs them at once)
            sim.handles[sim.contact_id(handle)] = handle
            sim.puppet.request_friendship(sim.contact_id(handle), f"客户{handle}", "你好")
        await sim.bot.settle()
        sent_ids = []
        for round_ in range(TEXTS_EACH):
            for n, handle in enumerate(handles):
                text = TEXTS[(n + round_) % len(TEXTS)]
                sent_ids.append(sim.puppet.customer_says(sim.contact_id(handle), text))
        rep_ids = [sim.puppet.rep_types(sim.contact_id(handle), "好的，稍等") for handle in handles]
        await sim.bot.settle()
        errors = [e for t in sim.bot.transports.values() for e in getattr(t, "errors", [])]
        assert errors == [], f"handlers failed: {errors[:3]}"
        await sim.advance(timedelta(minutes=5))

        customers = await sim.rows(Customer)
        assert sorted(c.wechat_id for c in customers) == sorted(sim.contact_id(h) for h in handles)
        assert len(sim.puppet.accepted) == FRIENDS
        requests = await sim.rows(Event, col(Event.kind) == "friend_request")
        assert Counter(e.external_id for e in requests).most_common(1)[0][1] == 1
        assert len(requests) == FRIENDS
        texts = await sim.rows(Event, col(Event.kind) == "message_in")
        assert sorted(str(e.external_id) for e in texts) == sorted(sent_ids), "each text stored once"
        by_rep = await sim.rows(Event, col(Event.kind) == "rep_message")
        assert sorted(str(e.external_id) for e in by_rep) == sorted(rep_ids), "the rep's messages too"
        welcomes = await sim.rows(ScheduledMessage, col(ScheduledMessage.kind) == Kind.WELCOME)
        assert sorted(w.customer_id or 0 for w in welcomes) == sorted(c.id or 0 for c in customers)
        sent = Counter(m["to"] for m in sim.sent("welcome"))
        assert set(sent.values()) == {1}, "none sent twice (pacing may hold some back)"


class _ReleaseOnRetry(logging.Handler):
    """Lets another connection's write lock go when the first retry is announced."""

    def __init__(self, holder: sqlite3.Connection) -> None:
        super().__init__()
        self.holder = holder
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.retries += 1
        if self.holder.in_transaction:
            self.holder.commit()


async def test_a_text_and_a_friend_request_refused_by_a_busy_database_are_tried_again(
    config: Config, db_url: str
) -> None:
    """Another process holds SQLite's write lock: the unit fails "database is locked", is run again
    from the start once the lock is free, and everything is stored once."""
    if not db_url.startswith("sqlite"):
        pytest.skip("a write lock held by another process is SQLite's")
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.new_customer("c1", "张三")
        holder = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None)
        retries = _ReleaseOnRetry(holder)
        logging.getLogger("storage.retry").addHandler(retries)
        try:
            holder.execute("BEGIN IMMEDIATE")
            await sim.customer_says("c1", "太贵了")
            holder.execute("BEGIN IMMEDIATE")
            await sim.friend_request("c2", "李四", "你好")
        finally:
            logging.getLogger("storage.retry").removeHandler(retries)
            holder.close()
        assert retries.retries >= 2, "each unit met the lock and was tried again"
        [text] = await sim.rows(Event, col(Event.kind) == "message_in")
        assert text.text == "太贵了"
        assert len(await sim.rows(Event, col(Event.kind) == "friend_request")) == 2
        assert sim.puppet.is_friend("wx_c2")


def test_only_refusals_for_now_are_retried() -> None:
    class Refused(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    assert transient(DBAPIError("UPDATE", {}, Refused("40001")))  # serialization failure
    assert transient(DBAPIError("UPDATE", {}, Refused("40P01")))  # deadlock
    assert not transient(DBAPIError("INSERT", {}, Refused("23505")))  # unique violation: for good
    assert not transient(ValueError("database is locked"))
