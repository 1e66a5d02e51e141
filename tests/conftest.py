"""Shared fixtures. Every test drives the real Wechaty class over the in-process LocalPuppet through
:class:`tests.harness.Harness` (a :class:`bot.simulate.Simulation`): push customer and rep actions
in, read what the bot sent out."""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import sqlite3
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from alembic import command

from bot.config import Config, parse_config
from storage.db import alembic_config
from tests.harness import Harness

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
# a Monday morning, inside the default working hours
MONDAY_10AM = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)


def default_config_data() -> dict[str, Any]:
    return tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))


def portable_config_text() -> str:
    """config.toml as shipped, with an absolute templates_dir so a copy works from any folder."""
    return (
        (ROOT / "config.toml")
        .read_text(encoding="utf-8")
        .replace('templates_dir = "scripts_templates"', f'templates_dir = "{ROOT / "scripts_templates"}"')
    )


def write_config(folder: Path, text: str | None = None) -> Path:
    """Write ``text`` (default: :func:`portable_config_text`) as ``folder/config.toml``."""
    path = folder / "config.toml"
    path.write_text(portable_config_text() if text is None else text, encoding="utf-8")
    return path


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def make_config(overrides: dict[str, Any] | None = None) -> Config:
    return parse_config(merge(default_config_data(), overrides or {}), "test-config", ROOT)


@pytest.fixture
def config() -> Config:
    return make_config()


POSTGRES = os.environ.get("SALESBOT_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES else ["sqlite"]


def _asyncpg_url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the SALESBOT_TEST_POSTGRES_URL server."""
    base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def _admin(statement: str) -> None:
    import asyncpg  # only needed for the PostgreSQL runs

    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _drop_postgres(name: str) -> None:
    import asyncpg

    try:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except asyncpg.InsufficientPrivilegeError:
        # FORCE may not end an autovacuum worker that happens to be in the database (that
        # needs pg_signal_backend); a plain DROP stops autovacuum itself
        await _admin(f'DROP DATABASE IF EXISTS "{name}"')


def _in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a thread of its own: the session templates are built on first use, which
    may be inside a test's running event loop, and Alembic's env.py (like asyncio.run) starts its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def _migrate(url: str) -> None:
    """Alembic upgrade to head."""
    _in_thread(lambda: command.upgrade(alembic_config(url), "head"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session: migrating takes ~0.5 s, copying the file ~1 ms."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as connection:  # fold the WAL into the file so one file is the copy
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """One migrated PostgreSQL database per session, the template every test's database is made from."""
    name = f"salesbot_template_{uuid.uuid4().hex[:12]}"
    _in_thread(lambda: asyncio.run(_admin(f'CREATE DATABASE "{name}"')))
    try:
        _migrate(_asyncpg_url(name))
        yield name
    finally:
        _in_thread(lambda: asyncio.run(_drop_postgres(name)))


@asynccontextmanager
async def _postgres_database(template: str = "template0") -> AsyncIterator[str]:
    name = f"salesbot_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _asyncpg_url(name)
    finally:
        await _drop_postgres(name)


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, already migrated database per test, copied from the session's template: SQLite
    always; PostgreSQL too when SALESBOT_TEST_POSTGRES_URL names a server where the user may create
    databases (.ci/run sets one up)."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    async with _postgres_database(request.getfixturevalue("postgres_template")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
async def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database with no schema at all, for the tests of the migrations themselves."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    async with _postgres_database() as url:
        yield url


@pytest.fixture
async def sim(config: Config, db_url: str) -> AsyncIterator[Harness]:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as simulation:
        yield simulation
