"""Shared fixtures. Every test drives the real Wechaty class over the in-process LocalPuppet through
:class:`bot.simulate.Simulation`: push customer and rep actions in, read what the bot sent out."""

from __future__ import annotations

import copy
import tomllib
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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
async def sim(config: Config, db_url: str) -> AsyncIterator[Simulation]:
    async with Simulation(config, MONDAY_10AM, database_url=db_url) as simulation:
        yield simulation
