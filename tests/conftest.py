"""Shared fixtures. Every test drives the real Wechaty class over the in-process LocalPuppet through
:class:`bot.simulate.Simulation`: push customer and rep actions in, read what the bot sent out."""

from __future__ import annotations

import copy
import os
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.config import Config, parse_config
from bot.simulate import Simulation

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


SimFactory = Callable[..., Simulation]


POSTGRES = os.environ.get("SALESBOT_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES else ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database per test: SQLite always; PostgreSQL too when SALESBOT_TEST_POSTGRES_URL names a
    server where the user may create databases (.ci/run sets one up)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    import asyncpg  # only needed for the PostgreSQL runs

    name = f"salesbot_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES)
    try:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except asyncpg.InsufficientPrivilegeError:
            # FORCE may not end an autovacuum worker that happens to be in the database (that
            # needs pg_signal_backend); a plain DROP stops autovacuum itself
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await admin.close()


@pytest.fixture
async def sim(config: Config, db_url: str) -> AsyncIterator[Simulation]:
    async with Simulation(config, MONDAY_10AM, database_url=db_url) as simulation:
        yield simulation
