"""Storage: migrations match the models, UTC round-trips, the outbox claims atomically."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import bindparam, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import Database, head_revision
from storage.errors import DatabaseUnavailable, SchemaUpgradeFailed
from storage.models import Account, Customer, ScheduledMessage, metadata
from storage.repositories import Outbox, OutgoingLog

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
async def db(empty_db_url: str) -> AsyncIterator[Database]:
    """Migrated here from an empty database: these tests are about the migrations themselves."""
    database = Database(empty_db_url)
    await database.migrate()
    async with database.transaction() as session:
        session.add(Account(id="demo", nickname="n", role="r", created_at=NOW, updated_at=NOW))
        session.add(Customer(account_id="demo", wechat_id="wx1", stage="stranger", added_at=NOW))
    yield database
    await database.close()


async def test_the_backend_is_the_one_the_url_names(db: Database, empty_db_url: str) -> None:
    expected = "postgresql" if empty_db_url.startswith("postgresql") else "sqlite"
    assert db.engine.dialect.name == expected
    async with db.engine.connect() as connection:
        version = (
            await connection.exec_driver_sql(
                "SELECT version()" if expected == "postgresql" else "SELECT sqlite_version()"
            )
        ).scalar()
    assert version


async def test_migrations_create_exactly_the_models_schema(db: Database) -> None:
    async with db.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert diff == [], f"models and migrations differ; add an Alembic revision: {diff}"
    assert {
        "account",
        "customer",
        "customer_tag",
        "stage_change",
        "note",
        "event",
        "outgoing_message",
        "scheduled_message",
        "alembic_version",
    } <= tables


async def test_the_index_of_sends_under_way_is_partial_on_both_backends(db: Database) -> None:
    """The model declares the WHERE for SQLite only (PostgreSQL's dialect stays unimported); the
    migration gives PostgreSQL the same partial index."""
    if db.engine.dialect.name == "postgresql":
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_outgoing_sending'"
    else:
        query = "SELECT sql FROM sqlite_master WHERE name = 'ix_outgoing_sending'"
    async with db.engine.connect() as connection:
        definition = (await connection.exec_driver_sql(query)).scalar_one()
    assert "WHERE" in definition.upper() and "sending" in definition, definition


_SQLITE_BOT = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
import bot.app, bot.runner
from storage.db import Database
from storage.models import Account, Customer, ScheduledMessage
from storage.repositories import Outbox

async def main() -> None:
    now = datetime.now(UTC)
    database = Database(sys.argv[1])
    await database.migrate(apart=True)  # Alembic runs in a child of its own
    async with database.transaction() as session:
        session.add(Account(id="demo", nickname="n", role="r", created_at=now, updated_at=now))
        session.add(Customer(account_id="demo", wechat_id="wx1", stage="stranger", added_at=now))
    async with database.transaction() as session:
        message = ScheduledMessage(
            account_id="demo", customer_id=1, kind="welcome", sequence="welcome", step="s",
            template="t", due_at=now, not_after=now + timedelta(hours=1), status="pending",
            idempotency_key="k", created_at=now, updated_at=now,
        )
        assert await Outbox(session).plan(message)  # an INSERT ... ON CONFLICT of the dialect's own
    await database.close()
    print(sorted(name for name in sys.modules if "postgresql" in name))

asyncio.run(main())
"""


def test_a_sqlite_bot_never_imports_postgresqls_dialect(tmp_path: Path) -> None:
    """PostgreSQL's dialect is ~2 MB of memory: a bot on SQLite (the app, a migration, a planned
    message) must not load it (issue 20)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _SQLITE_BOT, url], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_migrate_is_idempotent_and_keeps_data(db: Database) -> None:
    await db.migrate()
    async with db.transaction() as session:
        assert await session.get(Account, "demo") is not None


async def test_datetimes_are_stored_utc_and_come_back_aware(db: Database) -> None:
    shanghai = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    async with db.transaction() as session:
        customer = Customer(account_id="demo", wechat_id="wx2", stage="stranger", added_at=shanghai)
        session.add(customer)
    async with db.transaction() as session:
        loaded = await session.get(Customer, customer.id)
    assert loaded is not None
    assert loaded.added_at == shanghai and loaded.added_at.tzinfo is UTC
    assert loaded.added_at.hour == 2


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.transaction() as session:
            session.add(
                Customer(account_id="demo", wechat_id="wx3", stage="s", added_at=datetime(2026, 1, 1))
            )


def planned(key: str, due: datetime) -> ScheduledMessage:
    return ScheduledMessage(
        account_id="demo",
        customer_id=1,
        kind="welcome",
        sequence="welcome",
        step=key,
        template="t",
        due_at=due,
        not_after=due + timedelta(hours=1),
        status="pending",
        idempotency_key=key,
        created_at=NOW,
        updated_at=NOW,
    )


async def test_planning_is_an_upsert_on_the_idempotency_key(db: Database) -> None:
    async with db.transaction() as session:
        assert await Outbox(session).plan(planned("k1", NOW)) is True
        assert await Outbox(session).plan(planned("k1", NOW + timedelta(hours=1))) is False
    async with db.transaction() as session:
        assert await Outbox(session).next_due_at() == NOW


async def test_claim_takes_earliest_due_only_once(db: Database) -> None:
    async with db.transaction() as session:
        for minute in (5, 1, 3):
            await Outbox(session).plan(planned(f"k{minute}", NOW + timedelta(minutes=minute)))
    later = NOW + timedelta(minutes=4)

    async def claim() -> str | None:
        async with db.transaction() as session:
            row = await Outbox(session).claim_due(later, None, 1)
            return row[0].idempotency_key if row else None

    claimed = await asyncio.gather(*(claim() for _ in range(6)))
    assert sorted(k for k in claimed if k) == ["k1", "k3"], "each due row is claimed exactly once"
    async with db.transaction() as session:
        assert await Outbox(session).claim_due(later, None, 1) == []


async def test_upgrade_from_the_first_schema_keeps_data(empty_db_url: str) -> None:
    import asyncio

    from alembic import command

    from storage.db import alembic_config

    url = empty_db_url
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0001")
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO account VALUES ('demo', 'n', 'r', '{}', NULL, '2026-01-01', '2026-01-01')"
        )
        await connection.exec_driver_sql(
            "INSERT INTO customer (id, account_id, wechat_id, display_name, remark, source_channel, stage, "
            "added_at) VALUES (7, 'demo', 'wx7', '老客户', '', '', 'koc', '2026-01-01 00:00:00')"
        )
    await database.migrate()
    async with database.transaction() as session:
        customer = await session.get(Customer, 7)
    await database.close()
    assert customer is not None and customer.display_name == "老客户" and customer.stage == "koc"
    assert customer.paused_at is None


async def test_rows_of_unconnected_accounts_wait(db: Database) -> None:
    async with db.transaction() as session:
        await Outbox(session).plan(planned("k-demo", NOW))
    later = NOW + timedelta(minutes=1)
    async with db.transaction() as session:
        assert await Outbox(session).next_due_at(["other"]) is None
        assert await Outbox(session).claim_due(later, ["other"], 1) == []
        assert await Outbox(session).next_due_at(["demo"]) == NOW
        [claimed] = await Outbox(session).claim_due(later, ["demo", "other"], 1)
    assert claimed.idempotency_key == "k-demo"


async def begin_send(db: Database, text: str, key: str) -> int:
    """A send to the customer's chat, reserved in the outgoing log ("sending")."""
    async with db.transaction() as session:
        row_id = await OutgoingLog(session).begin(
            account_id="demo",
            customer_id=None,
            conversation_id="wx1",
            kind="alert",
            text=text,
            idempotency_key=key,
            at=NOW,
        )
    assert row_id is not None
    return row_id


async def note_echo(
    session: AsyncSession,
    account_id: str,
    *,
    platform_message_id: str,
    conversation_id: str,
    text: str,
    at: datetime,
) -> tuple[int, str] | None:
    """:meth:`OutgoingLog.echo_note`'s statement in a transaction (as PostgreSQL runs it)."""
    statement, params = OutgoingLog.echo_note(
        account_id,
        platform_message_id=platform_message_id,
        conversation_id=conversation_id,
        text=text,
        at=at,
        since=NOW,
    )
    row = (await session.exec(statement, params=params)).first()
    return None if row is None else (int(row[0]), str(row[1]))


async def test_an_echo_during_a_broken_send_settles_it_and_keeps_the_echoed_id(db: Database) -> None:
    async with db.transaction() as session:
        log = OutgoingLog(session)
        row_id = await log.begin(
            account_id="demo",
            customer_id=None,
            conversation_id="wx1",
            kind="countdown",
            text="还剩1天",
            idempotency_key="k1",
            at=NOW,
        )
        assert row_id is not None
    async with db.transaction() as session:  # the echo arrives while the send is still in flight
        echoed = await note_echo(
            session, "demo", platform_message_id="m-9", conversation_id="wx1", text="还剩1天", at=NOW
        )
        assert echoed == (row_id, "sending")
    async with db.transaction() as session:  # then the call breaks off: the echo proves delivery
        unsure = await OutgoingLog(session).unknown(row_id, "delivery unknown: reset")
        assert unsure is not None and unsure.status == "sent"
        await OutgoingLog(session).finish_many([(row_id, None)], NOW)
    async with db.transaction() as session:
        final = await OutgoingLog(session).by_key("k1")
        assert final is not None and (final.status, final.platform_message_id) == ("sent", "m-9")


async def test_an_echo_is_matched_by_platform_id_else_by_text_and_noted_once(db: Database) -> None:
    later = NOW + timedelta(minutes=1)
    ids = [await begin_send(db, text, key) for text, key in (("你好", "k1"), ("你好", "k2"), ("再见", "k3"))]
    async with db.transaction() as session:
        await OutgoingLog(session).finish_many([(ids[2], "m-3")], NOW)

    async def echo(account: str, pid: str, text: str, at: datetime = later) -> tuple[int, str] | None:
        async with db.transaction() as session:
            return await note_echo(
                session, account, platform_message_id=pid, conversation_id="wx1", text=text, at=at
            )

    # the same text twice: the oldest one not echoed yet, then the next
    assert await echo("demo", "m-1", "你好") == (ids[0], "sending")
    assert await echo("demo", "", "你好") == (ids[1], "sending")
    assert await echo("demo", "", "你好") is None
    # by platform id, whatever the text; again: still ours, the first echo's time kept
    assert await echo("demo", "m-3", "?") == (ids[2], "sent")
    assert await echo("demo", "m-3", "?", later + timedelta(minutes=1)) == (ids[2], "sent")
    # a rep's own message: none of ours; another account's chat neither
    assert await echo("demo", "m-x", "我来说") is None
    assert await echo("other", "m-3", "再见") is None
    async with db.transaction() as session:
        rows = {key: await OutgoingLog(session).by_key(key) for key in ("k1", "k2", "k3")}
    assert [(r.echoed_at, r.platform_message_id) for r in rows.values() if r is not None] == [
        (later, "m-1"),
        (later, None),
        (later, "m-3"),
    ]


async def test_after_commit_waits_for_the_unit_and_is_dropped_on_rollback(db: Database) -> None:
    ran: list[str] = []

    async def note(what: str) -> None:
        ran.append(what)

    await db.after_commit(lambda: note("outside a unit: at once"))
    async with db.unit_of_work():
        async with db.transaction():  # a service's transaction joins the unit
            await db.after_commit(lambda: note("committed"))
        assert db.in_unit() and ran == ["outside a unit: at once"], "nothing before the commit"
    assert ran == ["outside a unit: at once", "committed"]
    with pytest.raises(RuntimeError, match="boom"):
        async with db.unit_of_work():
            await db.after_commit(lambda: note("rolled back"))
            raise RuntimeError("boom")
    assert "rolled back" not in ran and not db.in_unit()


async def test_nothing_relaxed_runs_inside_a_unit(db: Database) -> None:
    async with db.unit_of_work():
        with pytest.raises(RuntimeError, match="unit of work"):
            async with db.relaxed_transaction():
                pass


async def test_a_relaxed_write_waits_for_another_writer_off_the_event_loop(db: Database) -> None:
    """The dispatcher's outcome write runs inline while SQLite's write lock is free; when another
    process holds it (a backup, say) the write waits in aiosqlite's thread, never in the loop."""
    if db.path is None:
        pytest.skip("SQLite on disk only: PostgreSQL's relaxed writes are transactions")
    row_id = await begin_send(db, "在吗", "k1")
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    ticks = 0

    async def loop_runs() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(loop_runs())
    async with db.relaxed_writes() as writer:
        sent_status = {"b_id": row_id, "b_status": "sent"}
        write = asyncio.create_task(writer.execute(OutgoingLog.SET_STATUS, sent_status))
        await asyncio.sleep(0.2)
        assert not write.done() and ticks >= 5  # waiting, and the loop goes on meanwhile
        other.execute("COMMIT")
        await write
    ticker.cancel()
    other.close()
    async with db.transaction() as session:
        sent = await OutgoingLog(session).by_key("k1")
    assert sent is not None and sent.status == "sent"


async def test_an_echo_noted_by_a_relaxed_write_leaves_an_unknown_send_to_its_settlement(
    db: Database,
) -> None:
    """``Messenger.record_echo`` notes an echo in one relaxed statement, no session (issue 20). Its
    times go through the column's conversion like a session's would; a send whose outcome is
    unknown is matched but not marked echoed, so a kill before its settlement commits leaves
    it for the next echo instead of lost."""
    later = NOW + timedelta(minutes=1)
    sent, broken = await begin_send(db, "你好", "k1"), await begin_send(db, "还剩1天", "k2")
    async with db.transaction() as session:
        unsure = await OutgoingLog(session).unknown(broken, "delivery unknown: reset")
        assert unsure is not None and unsure.status == "unknown"

    async def echo(text: str) -> list[tuple[object, ...]]:
        statement, params = OutgoingLog.echo_note(
            "demo", platform_message_id="", conversation_id="wx1", text=text, at=later, since=NOW
        )
        return await db.relaxed_returning(statement, params)

    assert await echo("你好") == [(sent, "sending")]
    if db.is_sqlite:  # stored as a session stores a time: the text SQLite compares
        async with db.engine.connect() as connection:
            stored = (
                await connection.execute(
                    text("SELECT created_at, echoed_at FROM outgoing_message WHERE id = :i"), {"i": sent}
                )
            ).one()
        assert [len(value) for value in stored] == [len("2026-11-23 02:00:00.000000")] * 2
    assert await echo("还剩1天") == [(broken, "unknown")]
    assert await echo("还剩1天") == [(broken, "unknown")]  # not noted: matched again
    async with db.transaction() as session:
        rows = {key: await OutgoingLog(session).by_key(key) for key in ("k1", "k2")}
        assert [(r.echoed_at, r.status) for r in rows.values() if r is not None] == [
            (later, "sending"),
            (None, "unknown"),
        ]
        assert await OutgoingLog(session).settle_echoed(broken, later) is not None
        assert await OutgoingLog(session).settle_echoed(broken, later) is None  # settled once
    async with db.transaction() as session:
        row = await OutgoingLog(session).by_key("k2")
        assert row is not None and (row.status, row.sent_at, row.echoed_at) == ("sent", later, later)
    assert await echo("还剩1天") == []  # settled and noted together: none of ours any more


async def test_a_relaxed_write_refused_for_now_is_run_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding SQLite's lock past the busy timeout: the echo's relaxed write is
    refused for now, and :meth:`Database.relaxed_returning` runs it again (as the unit it replaced
    was), instead of losing the echo to a raw driver error."""
    if db.path is None:
        pytest.skip("SQLite on disk only: PostgreSQL's relaxed writes are transactions")
    monkeypatch.setattr("storage.db.BUSY_TIMEOUT_MS", 50)  # the fallback connection opens after this
    row_id = await begin_send(db, "你好", "k1")
    statement, params = OutgoingLog.echo_note(
        "demo", platform_message_id="", conversation_id="wx1", text="你好", at=NOW, since=NOW
    )
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes, longer than one busy timeout
    echo = asyncio.create_task(db.relaxed_returning(statement, params))
    await asyncio.sleep(0.3)
    assert not echo.done()
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(echo, 10) == [(row_id, "sending")]


async def test_relaxed_writes_hold_no_pooled_connection_while_they_need_none(db: Database) -> None:
    """On SQLite a relaxed write runs on the loop's own connection; the autocommit pool (one
    connection) is taken only when a statement must wait for another process. A writer that held
    it all along made a second one meanwhile (an echo during a batch) open a connection of its
    own, a thread and all, for one statement."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL commits each relaxed write in a transaction of its own")
    row_id = await begin_send(db, "你好", "k1")
    pool = db._autocommit_engine.pool if db._autocommit_engine is not None else None
    assert isinstance(pool, QueuePool)
    async with db.relaxed_writes() as batch:
        await batch.execute(OutgoingLog.SET_STATUS, {"b_id": row_id, "b_status": "sent"})
        statement, params = OutgoingLog.echo_note(
            "demo", platform_message_id="m-1", conversation_id="wx1", text="你好", at=NOW, since=NOW
        )
        assert await db.relaxed_returning(statement, params) == [(row_id, "sent")]
        assert pool.checkedout() == 0
    with pytest.raises(ValueError, match="expanding IN"):  # compiled once: no list expanded per run
        async with db.relaxed_writes() as writer:
            table = metadata.tables["outgoing_message"]
            await writer.execute(table.delete().where(table.c.id.in_(bindparam("b_ids", expanding=True))), {})


async def test_a_child_process_migrates_and_its_failure_is_one_clean_sentence(empty_db_url: str) -> None:
    """``salesbot run`` migrates apart (issue 20: alembic stays out of the running bot): the schema
    it makes is the newest, data survives a second start, and a failure reads as what
    :meth:`Database.migrate` would have said, with neither traceback nor password."""
    database = Database(empty_db_url)
    try:
        await database.migrate(apart=True)
        assert await database.preflight() == head_revision()
        async with database.transaction() as session:
            session.add(Account(id="demo", nickname="n", role="r", created_at=NOW, updated_at=NOW))
        await database.migrate(apart=True)  # current already: no child, nothing lost
        async with database.transaction() as session:
            assert await session.get(Account, "demo") is not None
        async with database.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        with pytest.raises(DatabaseUnavailable) as refused:
            await database.migrate(apart=True)
    finally:
        await database.close()
    said = str(refused.value)
    assert "newer schema (revision 9999_from_the_future)" in said and "upgrade salesbot" in said
    assert "Traceback" not in said and "\n" not in said
    password = make_url(empty_db_url).password
    assert not password or f":{password}@" not in said  # PostgreSQL: the URL is shown without it


async def test_the_child_is_this_salesbot_and_gets_the_url_whatever_the_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started where a folder holds another ``storage`` package (an old checkout), with a locale
    whose encoding is not UTF-8 and a path that is not ASCII, the child still runs this code on
    this very file: the file appears where the URL says, with the newest schema."""
    fake = tmp_path / "storage"
    fake.mkdir()
    (fake / "__init__.py").write_text("", encoding="utf-8")
    (fake / "upgrade.py").write_text("raise SystemExit(0)  # pretends, does nothing\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONIOENCODING", "gb18030")
    path = tmp_path / "数据 张三" / "客户.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await database.migrate(apart=True)
        assert path.exists() and await database.preflight() == head_revision()
    finally:
        await database.close()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo 'Traceback (most recent call last): boom' >&2; exit 3", "ended with code 3"),
        ("exit 0", "still not the newest after the upgrade"),
    ],
)
async def test_a_child_that_dies_or_does_nothing_fails_the_start_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, expected: str
) -> None:
    """A child killed or crashed without its marked line, or one that exits 0 without upgrading,
    is not taken at its word: the start fails, saying so without a traceback."""
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\ncat >/dev/null\n{script}\n", encoding="utf-8")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        with pytest.raises(SchemaUpgradeFailed) as failed:
            await database.migrate(apart=True)
        assert await database.preflight() is None  # nothing was made
    finally:
        await database.close()
    assert expected in str(failed.value) and "Traceback" not in str(failed.value)
