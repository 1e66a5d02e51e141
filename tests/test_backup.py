"""``salesbot backup`` as a user runs it (the real CLI in a subprocess): a consistent copy of a
database another connection is writing, refusals that are one clear line, and a restore that
never re-sends what was under way when the backup was taken."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from bot.cli import _parser
from bot.config import Config
from storage.models import OutgoingMessage, ScheduledMessage
from tests.conftest import MONDAY_10AM, ROOT, portable_config_text, write_config
from tests.harness import Harness

AT = "2026-11-23 02:00:00.000000"


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def config_for(folder: Path, url: str) -> Path:
    """config.toml as shipped, with ``database.url`` set to ``url``."""
    default = 'url = "sqlite:///data/salesbot.db"'
    text = portable_config_text()
    assert default in text
    return write_config(folder, text.replace(default, f'url = "{url}"'))


def count(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (n,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


def add_customers(db: sqlite3.Connection, numbers: range) -> None:
    for n in numbers:
        db.execute(
            "INSERT INTO customer (account_id, wechat_id, display_name, remark, source_channel, stage,"
            " added_at) VALUES ('demo', ?, ?, '', '', 'stranger', ?)",
            (f"wx_{n}", f"客户{n}", AT),
        )


def add_pending(db: sqlite3.Connection, numbers: range) -> None:
    for n in numbers:
        db.execute(
            "INSERT INTO scheduled_message (account_id, customer_id, kind, sequence, step, template,"
            " context, due_at, not_after, status, attempts, last_error, idempotency_key, created_at,"
            " updated_at) VALUES ('demo', ?, 'followup', 'followup', '1d', '-', '{}', ?, ?, 'pending',"
            " 0, '', ?, ?, ?)",
            (n + 1, AT, AT, f"demo:{n}:followup:1d", AT, AT),
        )


def test_backup_of_a_database_being_written_holds_every_committed_row(
    tmp_path: Path, sqlite_template: Path
) -> None:
    tmp_path = tmp_path.resolve()  # as the CLI prints paths
    live = tmp_path / "salesbot.db"
    shutil.copyfile(sqlite_template, live)
    config = config_for(tmp_path, f"sqlite:///{live}")
    writer = sqlite3.connect(live, isolation_level=None)  # another process's connection: the bot's
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # the commits stay in salesbot.db-wal
        writer.execute("BEGIN")
        writer.execute(
            "INSERT INTO account (id, nickname, role, profile, created_at, updated_at)"
            " VALUES ('demo', '小李', '顾问', '{}', ?, ?)",
            (AT, AT),
        )
        add_customers(writer, range(30))
        add_pending(writer, range(5))
        writer.execute("COMMIT")
        writer.execute("BEGIN IMMEDIATE")  # a write under way: holds the write lock, not committed
        add_customers(writer, range(30, 40))
        assert Path(f"{live}-wal").stat().st_size > 0, "the committed rows are only in the WAL"
        naive = tmp_path / "naive-copy.db"
        shutil.copyfile(live, naive)
        assert count(naive, "customer") == 0, "copying the file alone loses the WAL's commits"

        (tmp_path / "backups").mkdir()
        result = run_cli(tmp_path, "backup", "backups/b.db", "--config", str(config))
        assert result.returncode == 0, result.stderr
        writer.execute("COMMIT")
    finally:
        writer.close()

    backup = tmp_path / "backups" / "b.db"
    assert f"backup written: {backup} (" in result.stdout
    assert f"{backup.stat().st_size:,} bytes" in result.stdout
    assert "customers: 30, pending messages: 5" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    with contextlib.closing(sqlite3.connect(backup)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",), "one self-contained file"
    assert not Path(f"{backup}-wal").exists()
    assert count(backup, "customer") == 30, "the committed rows, not the uncommitted ones"
    assert count(backup, "scheduled_message") == 5
    assert count(live, "customer") == 40, "the live database went on untouched"
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == ["b.db"], "no partial file left"

    again = run_cli(tmp_path, "backup", "backups/b.db", "--config", str(config))
    assert again.returncode == 1
    assert again.stderr == f"error: {backup} exists; pass --force to overwrite it\n"
    forced = run_cli(tmp_path, "backup", "backups/b.db", "--force", "--config", str(config))
    assert forced.returncode == 0, forced.stderr
    assert "customers: 40, pending messages: 5" in forced.stdout


def test_backup_refusals_are_one_clear_line(tmp_path: Path, sqlite_template: Path) -> None:
    tmp_path = tmp_path.resolve()
    postgres = config_for(tmp_path, "postgresql://salesbot:secret@127.0.0.1:9/salesbot")
    result = run_cli(tmp_path, "backup", "b.db", "--config", str(postgres))
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {postgres}: database.url is not SQLite; back up PostgreSQL with pg_dump -Fc "
        '(see "Backup and restore" in the README)\n'
    )
    assert "## Backup and restore" in (ROOT / "README.md").read_text(encoding="utf-8")

    missing = config_for(tmp_path, f"sqlite:///{tmp_path / 'nothing.db'}")
    result = run_cli(tmp_path, "backup", "b.db", "--config", str(missing))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'nothing.db'}: no database there")
    assert not (tmp_path / "nothing.db").exists(), "a backup never creates the database it copies"

    live = tmp_path / "salesbot.db"
    shutil.copyfile(sqlite_template, live)
    config = config_for(tmp_path, f"sqlite:///{live}")
    for target, message in [
        (str(live), f"{live}: that is the live database"),
        ("no/such/folder/b.db", f"{tmp_path / 'no' / 'such' / 'folder'}: no such folder"),
    ]:
        result = run_cli(tmp_path, "backup", target, "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: {message}"), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


async def test_a_restored_backup_never_resends_what_was_under_way(
    tmp_path: Path, sqlite_template: Path, config: Config
) -> None:
    """The backup is taken (by the real CLI, while the bot holds the database) when a batch of two
    welcomes is reserved: the first being sent, the second not yet tried. The bot kept sending
    after the backup, so either may have reached the customer: after the restore neither goes out
    again, and the rep is asked to check both chats."""
    live_file = tmp_path / "salesbot.db"
    shutil.copyfile(sqlite_template, live_file)
    url = f"sqlite+aiosqlite:///{live_file}"
    config_file = config_for(tmp_path, f"sqlite:///{live_file}")
    backup = tmp_path / "backup.db"
    ended = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await ended.wait()  # the process that held the batch: gone, as after a restore

    async with Harness(config, MONDAY_10AM, database_url=url) as live:
        await live.friend_request("c1", "张三")
        await live.friend_request("c2", "李四")
        welcomes = await live.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
        assert [row.status for row in welcomes] == ["pending", "pending"]
        contacts = {(await live.customer(h)).id: live.contact_id(h) for h in ("c1", "c2")}
        group = f"{live.bot.db.durability_epoch}/{socket.gethostname()}/{ended.pid}/batch"
        now = live.clock.now()
        async with live.bot.db.transaction() as session:
            for welcome in sorted(welcomes, key=lambda row: row.id or 0):
                row = await session.get(ScheduledMessage, welcome.id)
                assert row is not None and row.customer_id is not None
                row.status, row.claimed_at = "claimed", now
                session.add(
                    OutgoingMessage(
                        account_id=row.account_id,
                        customer_id=row.customer_id,
                        conversation_id=contacts[row.customer_id],
                        kind="welcome",
                        text="你好，我是小李",
                        idempotency_key=row.idempotency_key,
                        status="sending",
                        created_at=now,
                        attempt_group=group,
                    )
                )
        result = await asyncio.to_thread(
            run_cli, tmp_path, "backup", str(backup), "--config", str(config_file)
        )
    assert result.returncode == 0, result.stderr
    assert "sends under way: 2" in result.stdout

    # the restore, as the README says: the bot stopped, the database and its -wal/-shm replaced
    for stale in (live_file, Path(f"{live_file}-wal"), Path(f"{live_file}-shm")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(backup, live_file)
    async with Harness(config, MONDAY_10AM + timedelta(minutes=1), database_url=url) as restored:
        for handle, name in (("c1", "张三"), ("c2", "李四")):
            restored.puppet.add_contact(restored.contact_id(handle), name, friend=True)
            restored.handles[restored.contact_id(handle)] = handle
        await restored.advance(timedelta(hours=1))
        assert restored.texts_to("wx_c1") == [] and restored.texts_to("wx_c2") == [], "never sent again"
        alerts = [m["text"] for m in restored.sent("alert", "console")]
        assert len(alerts) == 2, alerts
        assert all("可能没有发出" in text for text in alerts), alerts
        assert any("张三" in text for text in alerts) and any("李四" in text for text in alerts)
        rows = await restored.rows(ScheduledMessage, ScheduledMessage.kind == "welcome")
        assert {row.status for row in rows} == {"failed"}
        sends = await restored.rows(OutgoingMessage, OutgoingMessage.kind == "welcome")
        assert {send.status for send in sends} == {"unknown"}


def test_readme_command_table_lists_every_cli_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name in commands._name_parser_map:
        assert f"| `salesbot {name}" in table, f"README: the command table under ## Commands lacks {name}"
