"""What ``salesbot run`` keeps in memory (issue 20): modules it does not need on its path are never
imported, so a change that pulls one back in fails here rather than as a bigger process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from bot.config import load_config
from storage.db import Database, alembic_config, head_revision
from tests.conftest import ROOT, portable_config_text

# training (NumPy, scikit-learn, SciPy), the label audit (cleanlab), schema changes (alembic and its
# templates), the web UI (aiohttp, its pages) when it is off; rjieba's package, whose import builds
# jieba's whole dictionary (the reader builds its own segmenter from rjieba's extension module);
# PyGithub with its crypto and JWT libraries, and Quart with Flask, Werkzeug and Hypercorn
# (python-wechaty imports both, salesbot stand-ins)
NOT_ON_THE_PATH = (
    *("numpy", "sklearn", "scipy", "cleanlab", "alembic", "mako", "aiohttp", "bot.web", "rjieba"),
    *("github", "jwt", "nacl", "quart", "quart_cors", "flask", "werkzeug", "hypercorn"),
)

STARTED = """
import asyncio, json, sys

from bot.cli import main  # noqa: F401  (the entry point's own imports)
from bot.config import load_config
from bot.runner import Runtime


async def started_and_stopped(path: str) -> None:
    runtime = Runtime(load_config(path))
    await runtime.start()
    await runtime.stop()


asyncio.run(started_and_stopped(sys.argv[1]))
from bot.objections.segmenter import built
assert built(), "the model loaded without building the segmenter"
print(json.dumps(sorted(sys.modules)))
"""


def config_without_web(folder: Path) -> Path:
    text = portable_config_text()
    text = text.replace('url = "sqlite:///data/salesbot.db"', f'url = "sqlite:///{folder / "bot.db"}"')
    before = "Set enabled = false to run without them.\nenabled = true"
    assert before in text
    path = folder / "config.toml"
    off = "Set enabled = false to run without them.\nenabled = false"
    path.write_text(text.replace(before, off), encoding="utf-8")
    return path


def modules_of_a_run(config: Path) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", STARTED, str(config)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


@pytest.mark.parametrize("start", ["first", "later"])
async def test_a_started_bot_without_the_web_ui_imports_nothing_it_does_not_use(
    tmp_path: Path, start: str
) -> None:
    """The first start creates the schema with alembic in a child process; a later one finds it
    current: neither keeps alembic (nor anything else it does not use) in the running bot."""
    config = config_without_web(tmp_path)
    url = load_config(config).database_url()
    if start == "later":
        db = Database(url)
        await db.migrate()
        await db.close()
    modules = modules_of_a_run(config)
    assert "bot.objections.model" in modules and "bot.runner" in modules  # it did run
    assert {p: loaded(modules, p) for p in NOT_ON_THE_PATH if loaded(modules, p)} == {}
    db = Database(url)
    try:
        assert await db.preflight() == head_revision()  # the child made the newest schema
    finally:
        await db.close()


def test_the_newest_revision_is_read_from_the_migrations_as_alembic_reads_it() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == scripts.get_current_head()
