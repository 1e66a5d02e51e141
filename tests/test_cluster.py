"""Several processes on one database (issue 19): SQLite refuses a second process; on PostgreSQL
each account is owned by one live process through a lease (taken, renewed, expired, taken over),
and a process recovers and claims only rows of the accounts it owns."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.cli import main
from bot.clock import VirtualClock
from bot.services.cluster import AlreadyRunning, Cluster
from bot.web.app import create_app
from storage.db import Database
from storage.models import Account, AccountLease, ClusterProcess, Customer, ScheduledMessage
from storage.repositories import Accounts, Customers, Outbox, OutgoingLog
from tests.cli_process import Bot
from tests.conftest import ROOT, portable_config_text, write_config
from tests.harness import Harness

T0 = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
LEASE = 30.0
ACCOUNTS = ["a", "b"]
# the subprocess imports this checkout's code, wherever the venv's editable install points
ENV = {"PYTHONPATH": str(ROOT)}


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.migrate()
    yield database
    await database.close()


def member(
    db: Database, clock: VirtualClock, host: str, only: list[str] | None = None, pid: int = 4242
) -> Cluster:
    return Cluster(db, clock, ACCOUNTS, lease_seconds=LEASE, only=only, host=host, pid=pid)


def dead_pid() -> int:
    """The pid of a process that has ended (on this host)."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(ended.stdout)


def skip_unless_postgres(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("account leases are for PostgreSQL; SQLite runs one process")


# -- SQLite: one process ------------------------------------------------------------------------


def test_a_second_salesbot_run_on_the_same_sqlite_file_is_refused_naming_the_first(tmp_path: Path) -> None:
    write_config(tmp_path)
    first = Bot(tmp_path, env=ENV)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "bot", "run", "--config", str(tmp_path / "config.toml"), "--port", "0"],
            cwd=tmp_path,
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        error = second.stderr.strip()
        assert error.startswith("error: another salesbot process is using"), error
        assert f"pid {first.process.pid} on host {socket.gethostname()}" in error
        assert "running since" in error and "\n" not in error and "Traceback" not in error
        assert "salesbot is running" not in second.stdout
        assert first.process.poll() is None, "the running process is untouched"
    finally:
        first.kill()  # SIGKILL: its process row stays behind
    restarted = Bot(tmp_path, env=ENV)  # the dead holder's pid is gone: no need to wait
    output = restarted.stop()
    assert "salesbot is running" in output


async def test_sqlite_refuses_while_the_other_heartbeat_is_fresh_and_admits_once_it_expired(
    empty_db_url: str,
) -> None:
    if not empty_db_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    db = Database(empty_db_url)
    await db.migrate()
    try:
        clock = VirtualClock(T0)
        other = member(db, clock, "other-host")  # another machine: only its heartbeat tells
        await other.join()
        with pytest.raises(AlreadyRunning, match="pid 4242 on host other-host"):
            await member(db, clock, "this-host").join()
        await other.heartbeat()
        clock.set(T0 + timedelta(seconds=LEASE - 1))
        with pytest.raises(AlreadyRunning):
            await member(db, clock, "this-host").join()
        clock.set(T0 + timedelta(seconds=2 * LEASE))  # no heartbeat for longer than the lease
        me = member(db, clock, "this-host")
        assert await me.join() == frozenset()
        assert me.ownership() is None, "SQLite: the one process owns every account"
        async with db.transaction() as session:
            ids = {p.id for p in (await session.exec(select(ClusterProcess))).all()}
        assert ids == {me.id}, "the expired row is cleared"
        await me.leave()
        async with db.transaction() as session:
            assert (await session.exec(select(ClusterProcess))).all() == []
    finally:
        await db.close()


async def test_sqlite_a_process_paused_past_its_lease_stops_when_another_took_over(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite only")
    clock = VirtualClock(T0)
    paused = member(db, clock, "host-1")
    await paused.join()
    clock.set(T0 + timedelta(seconds=2 * LEASE))  # paused (a laptop asleep): its row expired
    newer = member(db, clock, "host-2")
    await newer.join()
    with pytest.raises(AlreadyRunning, match=r"paused longer than .* pid 4242 on host host-2"):
        await paused.heartbeat()
    await newer.heartbeat()  # the newer one is unaffected


# -- PostgreSQL: leases -------------------------------------------------------------------------


async def test_leases_are_taken_renewed_and_taken_over_only_after_expiry(db: Database) -> None:
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    first, second = member(db, clock, "host-1"), member(db, clock, "host-2")
    assert await first.join() == {"a", "b"}, "alone: a fair share is everything"
    assert await second.join() == frozenset(), "both accounts are held by a live process"

    clock.set(T0 + timedelta(seconds=20))
    assert (await first.heartbeat()).lost == frozenset()  # renewed until T0+50
    clock.set(T0 + timedelta(seconds=40))
    assert (await second.heartbeat()).gained == frozenset(), "a renewed lease is not taken"

    clock.set(T0 + timedelta(seconds=51))  # first stopped renewing (paused, killed elsewhere)
    change = await second.heartbeat()
    assert change.gained == {"a", "b"} and second.owned == {"a", "b"}
    change = await first.heartbeat()  # it wakes up: told what it lost, takes nothing back
    assert change.lost == {"a", "b"} and first.owned == set()
    async with db.transaction() as session:
        leases = list((await session.exec(select(AccountLease))).all())
    assert {(lease.account_id, lease.owner) for lease in leases} == {("a", second.id), ("b", second.id)}


async def test_a_process_that_joins_gets_its_fair_share_handed_over(db: Database) -> None:
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    first, second = member(db, clock, "host-1"), member(db, clock, "host-2")
    assert await first.join() == {"a", "b"}
    assert await second.join() == frozenset()
    change = await first.heartbeat()
    assert change.surplus == {"b"}, "two live processes: one account each"
    await first.release(change.surplus)  # SalesBot stops its transport first
    assert (await second.heartbeat()).gained == {"b"}
    assert (await first.heartbeat()).surplus == frozenset(), "balanced: nothing moves again"
    assert (await second.heartbeat()).surplus == frozenset()


async def test_explicit_accounts_and_a_clean_stop_hand_over_at_once(db: Database) -> None:
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    first, second = member(db, clock, "host-1", only=["a"]), member(db, clock, "host-2", only=["b"])
    assert await first.join() == {"a"}
    assert await second.join() == {"b"}
    third = member(db, clock, "host-3")
    assert await third.join() == frozenset()
    await first.leave()  # released: no waiting for the lease to expire
    assert (await third.heartbeat()).gained == {"a"}
    assert first.ownership() == frozenset() and third.ownership() == frozenset({"a"})


async def test_a_killed_holder_on_this_host_is_taken_over_before_its_lease_expires(db: Database) -> None:
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    killed = member(db, clock, socket.gethostname(), pid=dead_pid())
    assert await killed.join() == {"a", "b"}
    survivor = member(db, clock, socket.gethostname(), pid=os.getpid())
    assert await survivor.join() == {"a", "b"}, "its pid is gone: no wait for the expiry"


async def test_racing_starts_never_share_an_account(db: Database) -> None:
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    members = [member(db, clock, f"host-{i}") for i in range(4)]
    owned = await asyncio.gather(*(m.join() for m in members))
    taken = [account for accounts in owned for account in accounts]
    assert sorted(taken) == sorted(set(taken)) and set(taken) <= set(ACCOUNTS)


# -- rows follow ownership ------------------------------------------------------------------------


def _row(account_id: str, key: str, status: str) -> ScheduledMessage:
    return ScheduledMessage(
        account_id=account_id,
        kind="bulk",
        sequence="bulk",
        step="0",
        template="-",
        context={},
        due_at=T0 - timedelta(minutes=1),
        not_after=T0 + timedelta(days=1),
        status=status,
        attempts=0,
        idempotency_key=key,
        created_at=T0,
        updated_at=T0,
    )


async def test_claims_and_recovery_touch_only_the_accounts_given(db: Database) -> None:
    async with db.transaction() as session:
        for account_id in ACCOUNTS:
            session.add(Account(id=account_id, nickname="n", role="r", created_at=T0, updated_at=T0))
    async with db.transaction() as session:
        outbox = Outbox(session)
        for account_id in ACCOUNTS:
            await outbox.plan(_row(account_id, f"due-{account_id}", "pending"))
            await outbox.plan(_row(account_id, f"claimed-{account_id}", "claimed"))
    if not db.is_sqlite:  # the lease is re-checked in the claim itself
        clock = VirtualClock(T0 - timedelta(seconds=LEASE))
        holder, other = member(db, clock, "host-1", only=["a"]), member(db, clock, "host-2", only=["b"])
        await holder.join()
        await other.join()
        async with db.transaction() as session:  # b is another's; a's lease expired at T0
            assert await Outbox(session).claim_due(T0, None, 10, lease=(holder.id, T0)) == []
        clock.set(T0)
        await holder.heartbeat()
        async with db.transaction() as session:
            claimed = await Outbox(session).claim_due(T0, None, 10, lease=(holder.id, T0))
        assert [row.idempotency_key for row in claimed] == ["due-a"]
    else:
        async with db.transaction() as session:
            claimed = await Outbox(session).claim_due(T0, frozenset({"a"}), 10)
        assert [row.idempotency_key for row in claimed] == ["due-a"]

    from bot.services.outbox import Dispatcher  # the dispatcher's recovery, restricted

    dispatcher = Dispatcher(db, VirtualClock(T0), messenger=None, composers={})  # type: ignore[arg-type]
    recovered = await dispatcher.recover(frozenset({"b"}))
    assert recovered.settled == 1
    async with db.transaction() as session:
        status = {r.idempotency_key: r.status for r in (await session.exec(select(ScheduledMessage))).all()}
    assert status == {
        "due-a": "claimed",  # ours, in hand
        "claimed-a": "claimed",  # a live process's: untouched
        "due-b": "pending",
        "claimed-b": "pending",  # a dead owner's, never reached the platform: back to pending
    }


# -- probes -----------------------------------------------------------------------------------------


async def test_healthz_and_readyz_answer_without_the_token_and_nothing_else_does(sim: Harness) -> None:
    app = create_app(sim.bot.reports, token="t0ken", token_for_reads=True, ready=sim.bot.readiness)
    async with TestClient(TestServer(app)) as client:
        health = await client.get("/healthz")
        assert health.status == 200 and await health.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status == 200 and await ready.json() == {"status": "ready"}
        assert (await client.get("/api/metrics")).status == 401, "only the probes skip the token"

    async def unreachable() -> str:
        return "the database cannot be reached (connection refused)"

    app = create_app(sim.bot.reports, token="t0ken", token_for_reads=True, ready=unreachable)
    async with TestClient(TestServer(app)) as client:
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert await ready.json() == {"status": "not ready", "reason": await unreachable()}


async def test_readiness_names_an_unreachable_database_and_an_account_without_owner(db: Database) -> None:
    gone = Database("postgresql+asyncpg://salesbot:pw@127.0.0.1:9/none")
    try:
        reason = await gone.ping(within=5)
    finally:
        await gone.close()
    assert reason.startswith("the database cannot be reached") and "pw" not in reason
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    holder, standby = member(db, clock, "host-1"), member(db, clock, "host-2", only=["a"])
    assert standby.readiness() == "not started yet"
    await holder.join()
    await standby.join()
    assert standby.readiness() == "", "every account it wants has a live owner: a ready standby"
    await holder.leave()
    standby.left_free = 1  # as seen between the release and its next heartbeat
    assert standby.readiness() == "1 account(s) have no owner yet"
    await standby.heartbeat()
    assert standby.owned == {"a"} and standby.readiness() == ""


# -- real processes -------------------------------------------------------------------------------


def two_account_config(folder: Path, url: str) -> None:
    """The shipped config on ``url`` with a second local account and a short lease."""
    text = portable_config_text().replace('url = "sqlite:///data/salesbot.db"', f'url = "{url}"')
    text = text.replace("lease_seconds = 30.0", "lease_seconds = 3.0")
    account = text[text.index("[[accounts]]") :]
    write_config(folder, text + "\n" + account.replace('id = "demo"', 'id = "second"', 1))


async def owners(url: str) -> dict[str, int]:
    """account -> pid of its lease's owner."""
    db = Database(url)
    try:
        async with db.transaction() as session:
            return {lease.account_id: lease.pid for lease in (await session.exec(select(AccountLease))).all()}
    finally:
        await db.close()


def wait_for(url: str, predicate: Callable[[dict[str, int]], bool], seconds: float = 30.0) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = asyncio.run(owners(url))
        if predicate(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"leases never settled: {asyncio.run(owners(url))}")


def test_two_processes_on_postgresql_share_two_accounts_and_a_survivor_takes_over(
    empty_db_url: str, tmp_path: Path
) -> None:
    if empty_db_url.startswith("sqlite"):
        pytest.skip("several processes need PostgreSQL")
    two_account_config(tmp_path, empty_db_url)
    first = Bot(tmp_path, env=ENV)
    assert "run by another process" not in first.output, "alone, it runs both accounts"
    second = Bot(tmp_path, env=ENV)
    try:
        assert "account demo: run by another process" in second.output
        # the first hands one account over at its next heartbeat; the second takes it
        shared = wait_for(empty_db_url, lambda o: set(o.values()) == {first.process.pid, second.process.pid})
        assert set(shared) == {"demo", "second"}
        listing = subprocess.run(
            [sys.executable, "-m", "bot", "cluster", "--config", str(tmp_path / "config.toml")],
            cwd=tmp_path,
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stderr
        assert "processes (2):" in listing.stdout and "salesbot:" not in listing.stdout  # no password
        for account_id, pid in shared.items():
            assert f"  {account_id}: pid {pid} on {socket.gethostname()}" in listing.stdout

        first.kill()  # SIGKILL: its lease stays behind; its pid is gone on this host
        survived = wait_for(empty_db_url, lambda o: set(o.values()) == {second.process.pid}, seconds=15)
        assert set(survived) == {"demo", "second"}
    finally:
        first.kill()
        output = second.stop()
    assert "taken over; connecting" in output
    assert asyncio.run(owners(empty_db_url)) == {}, "a clean stop releases every lease"


def test_run_accounts_names_unknown_ids_and_needs_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["run", "--config", str(config), "--accounts", "demo,nobody"]) == 1
    assert capsys.readouterr().err == (
        "error: --accounts: no account nobody in " + str(config) + " (configured: demo)\n"
    )
    assert main(["run", "--config", str(config), "--accounts", "demo"]) == 1
    assert "--accounts needs PostgreSQL" in capsys.readouterr().err


def test_cluster_lists_no_process_on_an_idle_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["cluster", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("processes (0):\naccounts (1):\n  demo: no lease"), out


async def test_the_dashboard_shows_the_processes_and_who_runs_each_account(sim: Harness) -> None:
    app = create_app(sim.bot.reports, token="t0ken", token_for_reads=False)
    async with TestClient(TestServer(app)) as client:
        alone = await (await client.get("/api/cluster")).json()
        assert [(p["pid"], p["alive"]) for p in alone["processes"]] == [(os.getpid(), True)]
        assert "运行中的进程" not in await (await client.get("/dashboard")).text(), "one process: no table"
        if sim.bot.db.is_sqlite:
            assert alone["owners"] == {}, "SQLite: no leases"
            return
        other = Cluster(
            sim.bot.db, sim.clock, ["demo", "vip"], lease_seconds=LEASE, only=["vip"], host="host-2", pid=77
        )
        await other.join()
        shown = await (await client.get("/api/cluster")).json()
        assert shown["owners"] == {
            "demo": {"host": socket.gethostname(), "pid": os.getpid()},
            "vip": {"host": "host-2", "pid": 77},
        }
        page = await (await client.get("/dashboard")).text()
        assert "运行中的进程" in page and "<td>host-2</td><td>77</td>" in page and "<td>vip</td>" in page


async def test_processes_starting_together_create_each_account_row_once(empty_db_url: str) -> None:
    """Each process syncs the configured accounts at startup: racing inserts must not fail one."""
    db = Database(empty_db_url)
    await db.migrate()
    try:
        clock = VirtualClock(T0)

        async def sync(nickname: str) -> None:
            async with db.transaction() as session:
                await asyncio.sleep(0)  # every transaction open before any inserts
                await Accounts(session).upsert("a", nickname, "r", {}, clock.now())

        await asyncio.gather(*(sync(f"n{i}") for i in range(4)))
        async with db.transaction() as session:
            rows = list((await session.exec(select(Account))).all())
        assert [row.id for row in rows] == ["a"]
    finally:
        await db.close()


async def test_the_fence_fails_once_the_lease_a_send_was_reserved_under_moved(db: Database) -> None:
    skip_unless_postgres(db)
    clock = VirtualClock(T0)
    paused, other = member(db, clock, "host-1"), member(db, clock, "host-2")
    await paused.join()
    token = paused.token("a")
    assert token is not None and await paused.holds("a", token)
    clock.set(T0 + timedelta(seconds=LEASE * 0.9))  # renewal stale: the lease row is read
    assert await paused.holds("a", token), "nobody took it: still ours"
    clock.set(T0 + timedelta(seconds=LEASE + 1))  # paused past its lease; the other takes over
    assert (await other.heartbeat()).gained == {"a", "b"}
    assert not await paused.holds("a", token), "taken over: the reserved send is fenced"
    await other.release(["a"])
    await paused.heartbeat()  # it wakes up, loses b, takes a again: a new lease
    assert paused.owned == {"a"} and paused.token("a") != token
    assert not await paused.holds("a", token), "a send reserved under the old lease stays fenced"
    assert await paused.holds("a", paused.token("a"))
    sqlite_like = Cluster(db, clock, ACCOUNTS, lease_seconds=LEASE)
    sqlite_like.shared = False
    assert sqlite_like.token("a") is None and await sqlite_like.holds("a", None), "SQLite: no fence"


async def test_recovery_of_a_long_message_cut_off_mid_part_reports_the_doubt(db: Database) -> None:
    """A long message goes out in parts ("<key>:1", "<key>:2"): a part left under way is in doubt,
    not taken for sent by the retry that finds its key used."""
    async with db.transaction() as session:
        session.add(Account(id="a", nickname="n", role="r", created_at=T0, updated_at=T0))
    async with db.transaction() as session:
        outbox, outgoing = Outbox(session), OutgoingLog(session)
        await outbox.plan(_row("a", "digest:x", "claimed"))
        await outbox.plan(_row("a", "digest:y", "claimed"))
        for key, outcome in (("digest:x:1", "sent"), ("digest:x:2", "sending"), ("digest:y:1", "sent")):
            sent_id = await outgoing.begin(
                account_id="a",
                customer_id=None,
                conversation_id="sup",
                kind="digest",
                text="t",
                idempotency_key=key,
                at=T0,
                attempt_group="elsewhere/host/1/batch",
            )
            if outcome == "sent":
                await outgoing.set_status(sent_id or 0, "sent")

    from bot.services.outbox import Dispatcher

    class Contacts:  # what recovery records of parts that went out unrecorded
        def __init__(self) -> None:
            self.keys: list[str] = []

        async def record_contact(self, _session: object, reservation: Any, _result: object) -> None:
            self.keys.append(reservation.key)

    contacts = Contacts()
    dispatcher = Dispatcher(db, VirtualClock(T0), messenger=contacts, composers={})  # type: ignore[arg-type]
    recovered = await dispatcher.recover()
    assert [row.idempotency_key for row in recovered.in_doubt] == ["digest:x"]
    assert sorted(contacts.keys) == ["digest:x:1", "digest:y:1"]
    async with db.transaction() as session:
        status = {r.idempotency_key: r.status for r in (await session.exec(select(ScheduledMessage))).all()}
    assert status == {"digest:x": "failed", "digest:y": "pending"}, "y's next part was never reserved"


async def test_a_customer_another_process_stored_first_is_not_stored_twice(
    sim: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A handover: the process losing an account still hears a friend request the new owner
    handles too. The new owner commits the customer just before this process inserts it: the
    insert yields to the stored row (no duplicate-key error, no traceback) and the friend request
    goes the checked way, so the customer is stored once and the welcome planned once by its key."""
    if sim.bot.db.is_sqlite:
        pytest.skip("one process on SQLite: a duplicate key there is a bug, not a race")
    insert_new = Customers.insert_new
    raced: list[str] = []

    async def other_process_first(self: Customers, customer: Customer) -> int | None:
        if not raced:  # the other owner stores the same customer, committed, just before us
            raced.append(customer.wechat_id)
            async with other.transaction() as session:
                session.add(
                    Customer(
                        account_id=customer.account_id,
                        wechat_id=customer.wechat_id,
                        display_name=customer.display_name,
                        stage=customer.stage,
                        added_at=customer.added_at,
                    )
                )
        return await insert_new(self, customer)

    other = Database(sim.bot.db.url)  # the other process: its own connections

    monkeypatch.setattr(Customers, "insert_new", other_process_first)
    with caplog.at_level(logging.INFO):
        await sim.friend_request("c1", "张三")
    assert raced, "the race was staged"
    stored = await sim.rows(Customer)
    assert [(c.account_id, c.wechat_id) for c in stored] == [(sim.account_id, raced[0])], "stored once"
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert not [r for t in sim.bot.transports.values() for r in getattr(t, "errors", [])]
    welcomes = [
        r.idempotency_key for r in await sim.rows(ScheduledMessage) if ":welcome:" in r.idempotency_key
    ]
    assert len(welcomes) == 1, welcomes
    await other.close()
