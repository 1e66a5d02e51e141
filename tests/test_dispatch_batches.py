"""Group commit in the dispatcher: a batch of due messages is reserved in one durable commit and
sent one by one, each outcome recorded before the next send. A crash midway leaves only the send
under way in doubt (after a machine crash: every unfinished send of the batch); an account going
offline or the process stopping releases the rest of the batch untried. Real Database, Messenger
and Dispatcher on SQLite and PostgreSQL; the transport is a list that records what "arrived"."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

import storage.db
from bot.clock import VirtualClock
from bot.errors import NotConnected, TransportError
from bot.hooks import CustomerUnreachable, Hooks, Undeliverable
from bot.services.messenger import Messenger
from bot.services.outbox import Composed, Dispatcher
from bot.services.reach import ReachPolicy
from storage.db import Database
from storage.models import Account, Customer, Event, OutgoingMessage, ScheduledMessage
from storage.repositories import Outbox
from tests.conftest import make_config

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


class Crash(BaseException):
    """Stands in for the process being killed in the middle of a send (nothing after it runs)."""


class Platform:
    """One account's transport: records each message that reached the platform. ``on_send`` may
    refuse (raise) before the message arrives."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.self_id = f"{account_id}-self"
        self.arrived: list[str] = []
        self.on_send: Callable[[str], None] = lambda text: None

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        self.on_send(text)
        self.arrived.append(text)
        return f"m-{len(self.arrived)}"


class KeyComposer:
    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None
        if row.step == "broken":
            raise RuntimeError("a bug in a composer")
        return Composed(customer.wechat_id, row.idempotency_key)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.migrate()
    async with database.transaction() as session:
        for account in ("a", "b"):
            session.add(Account(id=account, nickname="n", role="r", created_at=NOW, updated_at=NOW))
        session.add(Customer(id=1, account_id="a", wechat_id="wx-a", stage="stranger", added_at=NOW))
        session.add(Customer(id=2, account_id="b", wechat_id="wx-b", stage="stranger", added_at=NOW))
    yield database
    await database.close()


async def plan(db: Database, account: str, keys: list[str], steps: dict[str, str] | None = None) -> None:
    customer = 1 if account == "a" else 2
    async with db.transaction() as session:
        for n, key in enumerate(keys):
            await Outbox(session).plan(
                ScheduledMessage(
                    account_id=account,
                    customer_id=customer,
                    kind="bulk",
                    sequence="bulk",
                    step=(steps or {}).get(key, str(n)),
                    template="-",
                    due_at=NOW - timedelta(minutes=10) + timedelta(seconds=n),
                    not_after=NOW + timedelta(days=1),
                    status="pending",
                    idempotency_key=key,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )


def dispatcher(db: Database, *platforms: Platform, batch_size: int = 16) -> Dispatcher:
    clock = VirtualClock(NOW)
    messenger = Messenger(db, clock, {p.account_id: p for p in platforms})  # type: ignore[misc]

    async def unreachable(event: CustomerUnreachable) -> None:
        raise AssertionError("nobody is unreachable here")

    hooks = Hooks()
    hooks.on(CustomerUnreachable, unreachable)
    return Dispatcher(db, clock, messenger, {"bulk": KeyComposer()}, hooks=hooks, batch_size=batch_size)


async def statuses(db: Database) -> dict[str, tuple[str, str]]:
    async with db.transaction() as session:
        rows = (await session.exec(select(ScheduledMessage))).all()
    return {row.idempotency_key: (row.status, row.last_error) for row in rows}


async def message_out_events(db: Database) -> int:
    async with db.transaction() as session:
        return len((await session.exec(select(Event).where(Event.kind == "message_out"))).all())


def crash_on(platform: Platform, text: str) -> None:
    def maybe_crash(sending: str) -> None:
        if sending == text:
            platform.arrived.append(sending)  # it reached the platform; the process died before noting it
            raise Crash

    platform.on_send = maybe_crash


KEYS = [f"k{n}" for n in range(6)]


async def crash_while_sending_k2(db: Database) -> Platform:
    """One batch of KEYS; the process dies while k2 is being sent (k2 reached the platform)."""
    await plan(db, "a", KEYS)
    platform = Platform("a")
    crash_on(platform, "k2")
    with pytest.raises(Crash):
        await dispatcher(db, platform).run_due()
    return platform


async def test_a_crash_mid_batch_leaves_only_the_send_under_way_in_doubt(db: Database) -> None:
    platform = await crash_while_sending_k2(db)

    restarted = dispatcher(db, Platform("a"))
    recovery = await restarted.recover()
    assert recovery.settled == 6, "the whole batch was left claimed"
    assert [row.idempotency_key for row in recovery.in_doubt] == ["k2"], "the rep is told about k2"
    after = await statuses(db)
    assert [after[k][0] for k in ("k0", "k1")] == ["sent", "sent"]
    assert after["k2"][0] == "failed" and "delivery unknown" in after["k2"][1]
    assert [after[k][0] for k in ("k3", "k4", "k5")] == ["pending"] * 3, "never attempted: sent later"
    assert await message_out_events(db) == 2, "the sends before the crash are logged once"

    resumed = Platform("a")
    assert await dispatcher(db, resumed).run_due() == 3
    assert resumed.arrived == ["k3", "k4", "k5"]
    assert Counter(platform.arrived + resumed.arrived) == Counter({k: 1 for k in KEYS})
    assert await message_out_events(db) == 5


async def test_after_a_machine_crash_every_unfinished_send_of_the_batch_is_in_doubt(db: Database) -> None:
    await crash_while_sending_k2(db)

    # after a reboot the relaxed commits may be lost: nothing proves k3.. were not attempted
    db.durability_epoch = "another-boot"
    recovery = await dispatcher(db, Platform("a")).recover()
    assert sorted(row.idempotency_key for row in recovery.in_doubt) == ["k2", "k3", "k4", "k5"]
    after = await statuses(db)
    assert [after[k][0] for k in ("k0", "k1")] == ["sent", "sent"]
    assert {after[k][0] for k in ("k2", "k3", "k4", "k5")} == {"failed"}
    resumed = Platform("a")
    assert await dispatcher(db, resumed).run_due() == 0
    assert resumed.arrived == [], "in doubt means never sent again"


async def test_an_account_going_offline_mid_batch_releases_its_remaining_sends(db: Database) -> None:
    await plan(db, "a", ["a0", "a1", "a2"])
    await plan(db, "b", ["b0", "b1"])
    a, b = Platform("a"), Platform("b")
    attempts: list[str] = []

    def offline_from_a1(text: str) -> None:
        attempts.append(text)
        if text != "a0":
            raise NotConnected("account a: not connected")

    a.on_send = offline_from_a1
    sender = dispatcher(db, a, b)
    sender.available = lambda: ["a", "b"] if not a.arrived else ["b"]
    assert await sender.run_due() == 5
    assert a.arrived == ["a0"] and sorted(b.arrived) == ["b0", "b1"]
    assert attempts == ["a0", "a1"], "once a is offline its other sends are not even tried"
    after = await statuses(db)
    assert after["a1"][0] == after["a2"][0] == "pending", "nothing went out: they wait for a to reconnect"
    async with db.transaction() as session:
        tried = (await session.exec(select(OutgoingMessage).where(OutgoingMessage.account_id == "a"))).all()
    assert {row.idempotency_key: row.status for row in tried} == {
        "a0": "sent",
        "a1": "failed",
        "a2": "failed",
    }

    a.on_send = lambda text: None
    sender.available = lambda: None
    assert await sender.run_due() == 2
    assert a.arrived == ["a0", "a1", "a2"], "released sends go out once the account is back"


async def test_stopping_mid_batch_sends_nothing_more_and_loses_nothing(db: Database) -> None:
    await plan(db, "a", KEYS)
    platform = Platform("a")
    sender = dispatcher(db, platform)

    def stop_after_k1(text: str) -> None:
        if text == "k1":
            sender.stopping = True

    platform.on_send = stop_after_k1
    assert await sender.run_due() == 6
    assert platform.arrived == ["k0", "k1"]
    after = await statuses(db)
    assert [after[k][0] for k in KEYS] == ["sent", "sent"] + ["pending"] * 4

    sender.stopping = False
    platform.on_send = lambda text: None
    await sender.run_due()
    assert platform.arrived == KEYS


async def test_a_stopping_dispatcher_sends_only_named_rows_despite_the_stop(db: Database) -> None:
    """A stop sends what customers' messages gathered to send at once (bot/gathered_sends.py): a
    dispatch of those named rows despite the stop goes on, while a dispatch of every due row, or
    of named rows without it (a report, a handler's own), claims nothing."""
    await plan(db, "a", KEYS)
    platform = Platform("a")
    sender = dispatcher(db, platform)
    sender.stopping = True
    assert await sender.run_due() == 0 and platform.arrived == []
    ids = {key: row_id for key, row_id in (await row_ids(db)).items() if key in ("k1", "k3")}
    assert await sender.run_due(only=ids.values()) == 0 and platform.arrived == []
    assert await sender.run_due(only=ids.values(), despite_stop=True) == 2
    assert platform.arrived == ["k1", "k3"]
    after = await statuses(db)
    assert [after[k][0] for k in KEYS] == ["pending", "sent", "pending", "sent", "pending", "pending"]


async def row_ids(db: Database) -> dict[str, int]:
    async with db.transaction() as session:
        rows = (await session.exec(select(ScheduledMessage))).all()
    return {row.idempotency_key: row.id or 0 for row in rows}


async def test_a_row_that_breaks_its_composer_fails_alone(db: Database) -> None:
    await plan(db, "a", KEYS, steps={"k2": "broken"})
    platform = Platform("a")
    await dispatcher(db, platform).run_due()
    after = await statuses(db)
    assert after["k2"][0] == "failed" and "internal error" in after["k2"][1]
    assert platform.arrived == ["k0", "k1", "k3", "k4", "k5"]


@pytest.mark.parametrize("batch_size", [1, 4, 16])
async def test_every_batch_size_sends_in_due_order_once(db: Database, batch_size: int) -> None:
    keys = [f"k{n:02d}" for n in range(10)]
    await plan(db, "a", keys)
    platform = Platform("a")
    assert await dispatcher(db, platform, batch_size=batch_size).run_due() == 10
    assert platform.arrived == keys
    assert {status for status, _ in (await statuses(db)).values()} == {"sent"}
    assert await message_out_events(db) == 10


async def test_a_failing_alert_does_not_strand_the_next_batch(db: Database) -> None:
    await plan(db, "a", KEYS)
    platform = Platform("a")

    def refuse_k1(text: str) -> None:
        if text == "k1":
            raise TransportError("refused")

    platform.on_send = refuse_k1
    sender = dispatcher(db, platform, batch_size=2)

    async def alert_fails(event: Undeliverable) -> None:
        raise RuntimeError("the console is gone")

    sender.hooks.on(Undeliverable, alert_fails)
    assert await sender.run_due() == 6
    assert platform.arrived == ["k0", "k2", "k3", "k4", "k5"]
    after = await statuses(db)
    assert after["k1"][0] == "failed" and "refused" in after["k1"][1]
    assert {after[k][0] for k in KEYS if k != "k1"} == {"sent"}


async def move_batch_to_process(db: Database, pid: int) -> None:
    """Make the crashed batch look as if another process (``pid``) on this host had sent it."""
    async with db.transaction() as session:
        rows = (await session.exec(select(OutgoingMessage))).all()
        for row in rows:
            assert row.attempt_group is not None
            epoch_host, _, batch = row.attempt_group.rsplit("/", 2)
            row.attempt_group = f"{epoch_host}/{pid}/{batch}"


@pytest.mark.parametrize("sender_alive", [True, False])
async def test_recovery_leaves_a_live_dispatchers_batch_alone(db: Database, sender_alive: bool) -> None:
    """A second dispatcher on the same database still holds the rest of its batch: releasing its
    untried sends would let them go out twice. Only a batch whose process is gone is released."""
    await crash_while_sending_k2(db)
    if sender_alive:
        pid = os.getppid()  # alive: the process that started this test run
    else:
        ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await ended.wait()
        pid = ended.pid  # gone (and not reused this soon)
    await move_batch_to_process(db, pid)

    await dispatcher(db, Platform("a")).recover()
    after = await statuses(db)
    untried = {after[k][0] for k in ("k3", "k4", "k5")}
    assert untried == ({"failed"} if sender_alive else {"pending"})
    resumed = Platform("a")
    await dispatcher(db, resumed).run_due()
    assert resumed.arrived == ([] if sender_alive else ["k3", "k4", "k5"])


class SlowPlatform(Platform):
    """Each send takes a moment (a network round trip), so dispatch loops could overlap."""

    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.sending = 0
        self.most_at_once = 0

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        self.sending += 1
        self.most_at_once = max(self.most_at_once, self.sending)
        await asyncio.sleep(0.01)
        self.sending -= 1
        return await super().send_text(conversation_id, text)


async def test_dispatch_is_single_flight_so_a_kill_leaves_one_send_in_doubt(db: Database) -> None:
    """Startup dispatch, the poll job and a wake-up may all call run_due at once: one loop runs,
    the others wait, so at most one send is ever under way (the one a kill would leave in doubt)."""
    await plan(db, "a", KEYS)
    platform = SlowPlatform("a")
    sender = dispatcher(db, platform, batch_size=2)
    await asyncio.gather(sender.run_due(), sender.run_due(), sender.run_due())
    assert platform.most_at_once == 1, "never two sends under way"
    assert sorted(platform.arrived) == sorted(KEYS), "each message once"


async def test_a_batch_costs_one_statement_per_send_and_a_few_per_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round trips, not time: each send's outcome is the one statement a send needs of its own
    (written before the next send starts); claiming, customers, reserving, the log and the
    statuses are a handful of statements per batch. A per-row load or write on the dispatch path
    (a reservation per send, a row reloaded to mark it) breaks the bound."""
    await plan(db, "a", [f"n{n}" for n in range(48)])
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engines = db.sync_engines()
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    writes = storage.db._SQLiteWriter.execute

    async def counted(self: storage.db._SQLiteWriter, statement: Any, params: dict[str, Any]) -> None:
        statements.append(str(statement))
        await writes(self, statement, params)

    monkeypatch.setattr(storage.db._SQLiteWriter, "execute", counted)
    try:
        platform = Platform("a")
        assert await dispatcher(db, platform, batch_size=16).run_due() == 48
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)
    assert len(platform.arrived) == 48
    batches = 48 // 16 + 1  # and the round that settles the last batch
    assert len(statements) <= 48 + 8 * batches, "\n".join(statements)


async def test_the_reach_gate_reads_each_count_once_per_batch(db: Database) -> None:
    """Pacing holds a whole batch of one account's countdowns: the customer's and the account's
    counts and the last automated send are read once for the batch, not once per row."""
    async with db.transaction() as session:
        session.add(
            OutgoingMessage(
                account_id="a",
                customer_id=1,
                conversation_id="wx-a",
                kind="countdown",
                text="已发",
                idempotency_key="earlier",
                status="sent",
                created_at=NOW - timedelta(seconds=5),
                sent_at=NOW - timedelta(seconds=5),
            )
        )
    await plan(db, "a", [f"c{n}" for n in range(16)])
    async with db.transaction() as session:
        await session.exec(sa.update(ScheduledMessage).values(kind="countdown"))
    reads: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("SELECT") and "FROM outgoing_message" in statement:
            reads.append(statement)

    for engine in db.sync_engines():
        event.listen(engine, "before_cursor_execute", seen)
    try:
        clock = VirtualClock(NOW)
        gate = ReachPolicy(make_config(), random.Random(1))
        composers = {"countdown": KeyComposer()}
        messenger = Messenger(db, clock, {"a": Platform("a")})  # type: ignore[dict-item]
        await Dispatcher(db, clock, messenger, composers, gate=gate).run_due()
    finally:
        for engine in db.sync_engines():
            event.remove(engine, "before_cursor_execute", seen)
    after = await statuses(db)
    assert {status for status, _ in after.values()} == {"pending"}
    assert {error for _, error in after.values()} == {"deferred: pacing"}
    assert len(reads) == 3, "\n".join(reads)


async def test_only_the_claim_and_reservation_wait_for_the_disk(db: Database) -> None:
    """The rows an inbound event planned, sent at once: one disk-flushed commit claims and
    reserves them; what follows (each outcome, then the contacts, log and statuses of sends that
    went out) is relaxed, and a crash of the machine meanwhile is recovery's to finish."""
    if db._relaxed_engine is None:
        pytest.skip("PostgreSQL commits are always durable")
    await plan(db, "a", ["x1", "x2"])
    async with db.transaction() as session:
        ids = [row.id or 0 for row in (await session.exec(select(ScheduledMessage))).all()]
    durable: list[object] = []

    def committed(conn: object) -> None:
        durable.append(conn)

    for engine in db.sync_engines(relaxed=False):
        event.listen(engine, "commit", committed)
    try:
        platform = Platform("a")
        assert await dispatcher(db, platform).run_due(only=ids) == 2
    finally:
        for engine in db.sync_engines(relaxed=False):
            event.remove(engine, "commit", committed)
    assert platform.arrived == ["x1", "x2"]
    assert len(durable) == 1
    after = await statuses(db)
    assert {status for status, _ in after.values()} == {"sent"}
    assert await message_out_events(db) == 2
