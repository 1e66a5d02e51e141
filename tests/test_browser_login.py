"""Signing in from a phone in a real browser (Debian's Chromium through Playwright): the app served
as beyond loopback, the login page, the session cookie, links without the token, logout."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
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
TOKEN = "phone-login-token-0123"
PHONE = {"width": 390, "height": 844}

if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the browser tests (see .ci/run)")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

playwright = pytest.importorskip("playwright.async_api")


@pytest.fixture
async def served(config: Config, tmp_path: Any) -> AsyncIterator[tuple[str, Simulation]]:
    """The web UI as ``salesbot run --host 0.0.0.0`` serves it: every request needs the token."""
    sim = Simulation(config, MONDAY_10AM, database_url=f"sqlite+aiosqlite:///{tmp_path / 'web.db'}")
    async with sim:
        state = SimulatorState(sim.bot, sim.clock, "demo", sim.puppet)
        app = create_app(sim.bot.reports, token=TOKEN, token_for_reads=True, simulator=state)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}", sim
        finally:
            await runner.cleanup()


@pytest.fixture
def remote(served: tuple[str, Simulation]) -> str:
    return served[0]


@pytest.fixture
async def phone(remote: str) -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
        )
        try:
            context = await browser.new_context(viewport=PHONE)
            yield await context.new_page()
        finally:
            await browser.close()


async def test_sign_in_on_a_phone_then_links_need_no_token_and_logout_ends_it(
    remote: str, phone: Any
) -> None:
    await phone.goto(f"{remote}/dashboard")
    assert phone.url.startswith(f"{remote}/login"), "a person is sent to the login page"
    field = phone.get_by_label("访问令牌")
    await field.fill("not-the-token")
    await phone.get_by_role("button", name="登录").click()
    await phone.get_by_role("alert").get_by_text("访问令牌不对", exact=False).wait_for()

    await phone.get_by_label("访问令牌").fill(TOKEN)
    await phone.get_by_role("button", name="登录").click()
    await phone.wait_for_url(f"{remote}/dashboard")
    [cookie] = await phone.context.cookies()
    assert cookie["name"] == "salesbot_session" and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert TOKEN not in cookie["value"]
    assert "salesbot_session" not in await phone.evaluate("document.cookie"), "scripts cannot read it"
    html = await phone.content()
    assert TOKEN not in html and "token=" not in html
    links = "els => els.map(e => e.href || e.action)"
    hrefs = await phone.eval_on_selector_all("a[href], form[action]", links)
    assert all("token" not in href for href in hrefs), hrefs

    await phone.goto(f"{remote}/simulator")  # the simulator's calls ride on the session too
    assert TOKEN not in await phone.content()
    async with phone.expect_response(lambda r: r.url.endswith("/sim/friend_request")) as added:
        await phone.fill("#new-name", "张三")
        await phone.click("#add")
    assert (await added.value).status == 200

    await phone.goto(f"{remote}/dashboard")
    await phone.get_by_role("button", name="退出登录").click()
    await phone.wait_for_url(f"{remote}/login")
    assert await phone.context.cookies() == []
    await phone.goto(f"{remote}/dashboard")
    assert phone.url.startswith(f"{remote}/login"), "signed out: the dashboard asks again"


async def test_a_qr_code_to_scan_shows_on_a_phone_and_the_page_follows_the_scan(
    served: tuple[str, Simulation], phone: Any
) -> None:
    remote, sim = served
    await phone.goto(f"{remote}/dashboard?token={TOKEN}")
    assert await phone.locator("#logins").count() == 0
    sim.puppet.go_offline()
    sim.puppet.show_code()
    await sim.advance(timedelta(seconds=1))
    await phone.reload()
    code = phone.get_by_role("img", name="小林 的微信登录二维码")
    await code.wait_for()
    box = await code.bounding_box()
    assert box is not None and 150 <= box["width"] <= 390 and box["width"] == box["height"]
    # the login block fits the phone (the rest of the page is another change's)
    block = await phone.locator("#logins").bounding_box()
    assert block is not None and block["x"] + block["width"] <= PHONE["width"]
    assert await phone.evaluate("(b => b.scrollWidth <= b.clientWidth)(document.getElementById('logins'))")
    await phone.locator("#logins").get_by_text("等待扫码").wait_for()
    sim.puppet.scan()
    sim.puppet.confirm()
    await sim.advance(timedelta(seconds=1))
    # the page polls and reloads itself once the login state changed
    await phone.locator("[data-login='logged_in']").wait_for(timeout=10_000)
    assert await phone.get_by_role("img", name="小林 的微信登录二维码").count() == 0
