"""bench/hot_path.py keeps measuring what it says: its salesbot configuration stays a valid one, its
profile summary leaves out waiting and startup, and (over the real gateway) both programs do the
work and are measured. No time is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import hot_path
from bot.config import load_config
from tests.gateway_peer import ensure_node_gateway


def test_the_bench_config_is_salesbot_on_the_gateway_without_pauses(tmp_path: Path) -> None:
    config = load_config(hot_path.salesbot_config(tmp_path))
    [account] = config.accounts
    assert account.transport == "service"
    assert config.welcome.delay_seconds == config.welcome.min_gap_seconds == (0.0, 0.0)
    assert (config.web.enabled, config.coach.enabled, config.supervisors) == (False, False, [])
    assert str(tmp_path / "bot.db") in config.database.url


def test_the_load_is_half_objections_from_the_corpus() -> None:
    texts = hot_path.corpus_texts(40, seed=1)
    assert len(texts) == 40 and len(set(texts)) > 30
    assert hot_path.corpus_texts(40, seed=1) == texts, "the same seed, the same load"
    objections = hot_path.labelled_objections(texts)
    assert 15 <= len(objections) <= 25, "the bare bot's console work: one message per labelled objection"
    assert set(objections) < set(texts)


def test_the_profile_counts_work_not_waiting_startup_or_shutdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = "thread (1): MainThread;run (asyncio/runners.py:190)"
    worker = "thread (2): Thread-3 (_connection_worker_thread);Thread.run (threading.py:982)"
    raw = tmp_path / "profile.txt"
    raw.write_text(
        f"{main};SalesBot.handle (bot/app.py:10);expect (sqlalchemy/sql/coercions.py:424) 30\n"
        f"{worker};_connection_worker_thread (aiosqlite/core.py:63) 10\n"
        f"{worker};_connection_worker_thread (aiosqlite/core.py:59) 500\n"
        f"{main};EpollSelector.select (selectors.py:468) 400\n"
        f"{main};_find_and_load (<frozen importlib._bootstrap>:1176) 900\n",
        encoding="utf-8",
    )
    hot_path.print_profile(raw, top=5)
    out = capsys.readouterr().out
    assert "40 samples of work" in out
    assert "75.0%  SQLAlchemy" in out and "25.0%  SQLite itself" in out
    assert "75.0%  SalesBot.handle (bot/app.py)" in out


@pytest.mark.gateway
async def test_both_programs_do_the_work_and_are_measured() -> None:
    ensure_node_gateway()
    texts = hot_path.corpus_texts(6, seed=3)
    for program in ("bare", "salesbot"):
        run, folder = await hot_path.run_once(program, friends=2, texts=texts, rate=0, settle=1.0)
        assert run.problems == [], folder
        assert run.welcomes == 2 and run.cpu > 0 and run.peak_rss_mb > 0


def test_aiosqlite_hops_are_counted_from_the_first_event(tmp_path: Path) -> None:
    hop = "2026-12-03 12:09:04,699 DEBUG aiosqlite: executing functools.partial(<built-in method"
    log = tmp_path / "bot.log"
    log.write_text(
        f"{hop} execute of sqlite3.Cursor object at 0x1>, 'CREATE TABLE t (id)')\n"
        "2026-12-03 12:09:05,000 INFO salesbot: demo: friend request from 客户0\n"
        f"{hop} cursor of sqlite3.Connection object at 0x1>)\n"
        f"{hop} execute of sqlite3.Cursor object at 0x1>, 'INSERT INTO event (kind) VALUES (?)', ('x',))\n"
        f"{hop} commit of sqlite3.Connection object at 0x1>)\n",
        encoding="utf-8",
    )
    calls = hot_path.aiosqlite_hops(log)
    assert calls["thread hops (aiosqlite)"] == 3
    assert calls["hop: execute"] == 1 and calls["hop: commit"] == 1


def test_statements_are_traced_on_every_connection_and_thread(tmp_path: Path) -> None:
    """The bot process's sitecustomize counts what SQLite runs, whoever opened the connection and
    on whichever thread; SIGUSR1 writes the counts so far, the exit the final ones."""
    (tmp_path / "sitecustomize.py").write_text(hot_path.TRACING_SITE, encoding="utf-8")
    program = """
import os, signal, sqlite3, threading
db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
db.execute("CREATE TABLE t (id)")
os.kill(os.getpid(), signal.SIGUSR1)
db.execute("BEGIN")
db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
db.execute("COMMIT")
worker = threading.Thread(target=lambda: sqlite3.connect(":memory:").execute("  select 1"))
worker.start(); worker.join()
"""
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HOT_PATH_TRACE": str(tmp_path)}
    subprocess.run([sys.executable, "-c", program], env=env, check=True, timeout=60)
    [before_file] = tmp_path.glob("statements-before-*.json")  # named by the process's id
    pid = before_file.stem.rsplit("-", 1)[1]
    before = json.loads(before_file.read_text(encoding="utf-8"))
    after = json.loads((tmp_path / f"statements-{pid}.json").read_text(encoding="utf-8"))
    assert before == {"CREATE": 1}
    assert after == {"CREATE": 1, "BEGIN": 1, "INSERT": 2, "COMMIT": 1, "SELECT": 1}
