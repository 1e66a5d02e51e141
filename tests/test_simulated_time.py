"""The simulator's fast-forward never touches real time: it is refused while a service (real WeChat)
account is configured or once the database has served one, and a database it moved ahead is never
used by a service account (its rows are dated in the future; real time would expire them)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Config
from bot.errors import ConfigError
from bot.runner import Runtime
from bot.web.app import create_app
from bot.web.simulator import SimulatorState
from tests.conftest import MONDAY_10AM, default_config_data, make_config, portable_config_text, write_config
from tests.harness import Harness

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def local_only() -> Config:
    return make_config()


def with_real_account() -> Config:
    """The shipped config's local account ``demo`` plus ``acme`` on the puppet service."""
    data = default_config_data()
    demo = data["accounts"][0]
    acme = {**demo, "id": "acme", "transport": "service", "token": "insecure_acme", "endpoint": "127.0.0.1:9"}
    return make_config({"accounts": [demo, acme]})


async def simulator(sim: Harness) -> TestClient[Any, Any]:
    state = SimulatorState(sim.bot, sim.clock, "demo", sim.puppets["demo"])
    client = TestClient(
        TestServer(create_app(sim.bot.reports, token=TOKEN, token_for_reads=False, simulator=state))
    )
    await client.start_server()
    return client


@pytest.fixture
async def web(db_url: str) -> AsyncIterator[Any]:
    """``await web(config, start)``: a running bot on ``db_url`` with the web simulator mounted."""
    opened: list[tuple[Harness, TestClient[Any, Any]]] = []

    async def open_(config: Config, start: datetime = MONDAY_10AM) -> tuple[Harness, TestClient[Any, Any]]:
        sim = await Harness(config, start, database_url=db_url).__aenter__()
        client = await simulator(sim)
        opened.append((sim, client))
        return sim, client

    yield open_
    for sim, client in opened:
        await client.close()
        if not sim.stopped:
            await sim.__aexit__(None, None, None)


async def test_fast_forward_is_refused_while_a_real_wechat_account_is_configured(web: Any) -> None:
    sim, client = await web(with_real_account())
    before = sim.clock.now()
    response = await client.post("/sim/advance", json={"duration": "1d"}, headers=AUTH)
    assert response.status == 409
    error = (await response.json())["error"]
    assert error.startswith("快进已关闭：账号 acme 连着真实微信") and "fast-forward" not in error, (
        "the page shows it"
    )
    assert sim.clock.now() == before, "the clock did not move"
    page = await (await client.get("/simulator")).text()
    assert 'id="fast-forward-off"' in page and "快进已关闭" in page
    assert page.count(" disabled>") == 3, "the three fast-forward buttons are disabled"


async def test_fast_forward_is_refused_on_a_database_that_served_real_wechat(web: Any) -> None:
    live, _ = await web(with_real_account())
    await live.__aexit__(None, None, None)
    sim, client = await web(local_only())  # the same database, now with local accounts only
    before = sim.clock.now()
    response = await client.post("/sim/advance", json={"duration": "200d"}, headers=AUTH)
    assert response.status == 409
    error = (await response.json())["error"]
    assert "这个数据库自" in error and "用于真实微信（账号 acme）" in error and "[database] url" in error
    assert sim.clock.now() == before
    assert 'id="fast-forward-off"' in await (await client.get("/simulator")).text()


async def test_a_fast_forwarded_database_is_a_simulation_that_real_wechat_refuses(
    web: Any, db_url: str
) -> None:
    sim, client = await web(local_only())
    page = await (await client.get("/simulator")).text()
    assert 'id="fast-forward-off"' not in page and "快进只用于模拟" in page
    before = sim.clock.now()
    response = await client.post("/sim/advance", json={"duration": "1d"}, headers=AUTH)
    assert response.status == 200
    assert sim.clock.now() >= before + timedelta(days=1)
    await sim.__aexit__(None, None, None)

    real = Harness(with_real_account(), MONDAY_10AM, database_url=db_url)
    try:
        with pytest.raises(ConfigError, match=r"^database\.url: the browser simulator fast-forwarded"):
            await real.bot.start()
    finally:
        await real.bot.stop()


async def test_salesbot_run_resumes_a_simulation_at_the_time_it_had_reached(web: Any, db_url: str) -> None:
    start = datetime.now(UTC)
    sim, client = await web(local_only(), start)
    response = await client.post("/sim/advance", json={"duration": "30d"}, headers=AUTH)
    assert response.status == 200
    await sim.__aexit__(None, None, None)

    runtime = Runtime(make_config({"database": {"url": db_url}, "web": {"enabled": False}}))
    try:
        await runtime.bot.start()
        assert runtime.bot.clock.now() >= start + timedelta(days=30), "time never goes backwards"
    finally:
        await runtime.bot.stop()


def test_the_cli_refuses_real_wechat_on_a_database_the_simulator_moved_ahead(tmp_path: Path) -> None:
    """As it happened: play in the simulator of ``salesbot run``, fast-forward 200 days, then switch
    the account to the puppet service on the same database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESBOT_")}
    config = write_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while line := process.stdout.readline():
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        url = re.search(r"simulator: (http://127\.0\.0\.1:\d+)/simulator", "".join(lines))
        assert url, "".join(lines)
        # like the page: the session cookie it was served with, and its own origin
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(f"{url.group(1)}/simulator", timeout=10) as response:
            assert response.status == 200
        request = urllib.request.Request(
            f"{url.group(1)}/sim/advance",
            data=json.dumps({"duration": "200d"}).encode(),
            headers={"Origin": url.group(1), "Content-Type": "application/json"},
        )
        with browser.open(request, timeout=60) as response:
            assert json.load(response)["ok"] is True
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    write_config(tmp_path, portable_config_text().replace('transport = "local"', 'transport = "service"'))
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config), "--port", "0"],
        cwd=tmp_path,
        env={**env, "SALESBOT_DEMO_TOKEN": "insecure_demo", "SALESBOT_DEMO_ENDPOINT": f"127.0.0.1:{closed}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "config.toml: database.url: the browser simulator fast-forwarded this database" in result.stderr
    assert "Traceback" not in result.stderr
