"""The browser simulator and dashboard in a real browser: Playwright driving Debian's Chromium
(``apt-get install chromium``; browsers cannot be downloaded here, so it is launched by path)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.config import Config
from bot.simulate import Simulation
from bot.web.app import create_app
from bot.web.simulator import SimulatorState
from tests.conftest import MONDAY_10AM

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "browser-test-token"

if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the browser tests (see .ci/run)")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

playwright = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def served(config: Config, tmp_path: Any) -> AsyncIterator[tuple[str, Simulation]]:
    sim = Simulation(config, MONDAY_10AM, database_url=f"sqlite+aiosqlite:///{tmp_path / 'web.db'}")
    async with sim:
        state = SimulatorState(sim.bot, sim.clock, "demo", sim.puppet)
        app = create_app(sim.bot.reports, token=TOKEN, token_for_reads=False, simulator=state)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}", sim
        finally:
            await runner.cleanup()


@pytest.fixture
async def page(served: tuple[str, Simulation]) -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_customer_adds_rep_objects_and_rep_clicks_a_script(
    served: tuple[str, Simulation], page: Any
) -> None:
    url, _sim = served
    await page.goto(f"{url}/simulator")
    await page.fill("#new-name", "张三")
    await page.fill("#new-hello", "小红书看到的")
    await page.click("#add")
    await page.click("[data-ff='1m']")  # the welcome waits a human-like pause
    phone = page.locator("#phone-log")
    await phone.get_by_text("感谢您从小红书找到我", exact=False).wait_for()

    await page.fill("#say-text", "太贵了")
    await page.click("#say")
    console = page.locator("#console-log")
    await console.get_by_text("提出「价格」顾虑", exact=False).wait_for()
    first_script = console.locator(".script[data-n='1']").first
    script_text = (await first_script.text_content()).removeprefix("1. ")
    await first_script.click()
    await console.get_by_text("已安排发送话术 1", exact=False).wait_for()
    await page.click("[data-ff='1m']")
    reply = phone.locator(".msg", has_text=script_text[:12])
    await reply.wait_for()
    shown = await reply.first.text_content()
    assert "话术" in shown and "reply" not in shown, "the bubble names the kind in Chinese"
    assert "welcome" not in await phone.text_content() and "欢迎语" in await phone.text_content()
    await page.locator("#card").get_by_text("阶段：潜在", exact=False).wait_for()
    await page.fill("#rep-text", "/note 周六来试驾")
    await page.click("#rep")
    await page.locator("#card").get_by_text("备注：周六来试驾", exact=False).wait_for()


async def test_dashboard_shows_the_funnel(served: tuple[str, Simulation], page: Any) -> None:
    url, sim = served
    for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五")):
        await sim.friend_request(handle, name)
    await sim.rep_types("/stage @张三 intent")
    await sim.rep_types("/order @李四")
    await page.goto(f"{url}/dashboard")
    funnel = page.locator("#funnel")
    counts = {
        stage: await funnel.locator(f"g[data-stage='{stage}']").get_attribute("data-count")
        for stage in ("stranger", "intent", "ordered", "koc")
    }
    assert counts == {"stranger": "1", "intent": "1", "ordered": "1", "koc": "0"}
    assert await page.text_content("#m-new-friends") == "3"
    await page.select_option("select[name=stage]", "intent")
    await page.click("form button")
    await page.locator("#customers").get_by_text("张三").wait_for()
    assert "客户（共 1 位）" in await page.content()
