"""The browser simulator and dashboard in a real browser: Playwright driving Debian's Chromium
(``apt-get install chromium``; browsers cannot be downloaded here, so it is launched by path)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.config import Config
from bot.domain.kinds import Kind
from bot.simulate import Simulation
from bot.web.app import create_app
from bot.web.simulator import SimulatorState
from tests.conftest import MONDAY_10AM
from tests.dashboard_data import seed_three_days

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "browser-test-token"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
INTERNAL = re.compile(r"(?<![/\w])(" + "|".join(k.value for k in Kind) + r")\b")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT|\dT\d\d:\d\d")

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
async def browser() -> AsyncIterator[Any]:
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
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(served: tuple[str, Simulation], browser: Any) -> Any:
    return await browser.new_page(viewport=LAPTOP)


async def assert_readable(page: Any) -> None:
    """What a person sees: no internal kind name, no ISO time."""
    text = await page.evaluate("document.body.innerText")
    assert not INTERNAL.search(text), INTERNAL.search(text)
    assert not ISO_TIME.search(text), ISO_TIME.search(text)


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
    await page.click("#filter-button")
    await page.locator("#customers-title", has_text="客户（共 1 位）").wait_for()
    assert await page.locator("#customers").get_by_text("张三").is_visible()


async def test_reload_and_a_second_tab_keep_customers_and_histories(
    served: tuple[str, Simulation], browser: Any
) -> None:
    url, _sim = served
    context = await browser.new_context(viewport=LAPTOP)
    first, second = await context.new_page(), await context.new_page()
    for tab in (first, second):
        await tab.goto(f"{url}/simulator")
    await first.press("#say-text", "Enter")
    await first.locator("#say-hint").get_by_text("请先加一位客户为好友").wait_for()
    await first.press("#new-name", "Enter")
    await first.locator("#add-hint").get_by_text("请先填写新客户的名字").wait_for()

    await first.fill("#new-name", "张三")
    await first.fill("#new-hello", "抖音看到的")
    await first.press("#new-hello", "Enter")  # Enter sends in every box
    await first.locator("#phone-log").get_by_text("抖音看到的").wait_for()  # the customer's hello
    await first.locator("#console-log").get_by_text("新好友：张三（验证消息：抖音看到的）").wait_for()
    await second.fill("#new-name", "张三")  # the same name in another tab: a second customer
    await second.press("#new-name", "Enter")
    await second.locator("#console-log").get_by_text("新好友：张三", exact=True).wait_for()
    await first.locator("#customer option").nth(1).wait_for(state="attached")
    await first.click("[data-ff='1m']")
    await first.locator("#phone-log").get_by_text("欢迎语", exact=False).first.wait_for()
    await first.fill("#say-text", "太贵了")

    async def slowly(route: Any) -> None:
        await asyncio.sleep(0.5)
        await route.continue_()

    await first.route("**/sim/say*", slowly)
    await first.press("#say-text", "Enter")
    assert await first.locator("#say").is_disabled() and await first.text_content("#say") == "处理中…"
    await first.locator("#say:not([disabled])").wait_for()
    assert await first.text_content("#say") == "发送"
    await first.unroute("**/sim/say*")
    await first.locator("#console-log").get_by_text("提出「价格」顾虑", exact=False).wait_for()
    await first.fill("#rep-text", "/note @张三 周六来")
    await first.press("#rep-text", "Enter")
    await first.locator("#console-log").get_by_text("/pick", exact=False).first.wait_for()
    await first.fill("#rep-text", "/pick 1")
    await first.press("#rep-text", "Enter")
    await first.locator("#card").get_by_text("备注：周六来", exact=False).wait_for()
    # the picker follows the command's customer (it updates as the command's answer arrives)
    await playwright.expect(first.locator("#current")).to_have_value("c1")

    before = {
        log: await first.locator(f"#{log} .msg").all_text_contents() for log in ("phone-log", "console-log")
    }
    await first.reload()
    await first.locator("#phone-log .msg").nth(len(before["phone-log"]) - 1).wait_for()
    await first.locator("#console-log .msg").nth(len(before["console-log"]) - 1).wait_for()
    for log, shown in before.items():
        assert await first.locator(f"#{log} .msg").all_text_contents() == shown, log
    options = await first.locator("#customer option").all_text_contents()
    assert len(options) == 2 and all(o.startswith("张三 #") for o in options) and options[0] != options[1]
    assert await first.input_value("#current") == "c1"
    await assert_readable(first)

    await second.reload()  # the other tab shows the same console
    await second.locator("#console-log .msg").nth(len(before["console-log"]) - 1).wait_for()
    assert await second.locator("#console-log .msg").all_text_contents() == before["console-log"]
    await second.select_option("#current", "c2")
    await second.fill("#rep-text", "/note 第二位")
    await second.press("#rep-text", "Enter")
    await second.locator("#console-log").get_by_text("第二位", exact=False).last.wait_for()
    await first.locator("#console-log").get_by_text("/note 第二位").wait_for()  # live in the other tab
    await context.close()


async def test_on_a_phone_one_column_with_tabs_and_no_horizontal_overflow(
    served: tuple[str, Simulation], browser: Any
) -> None:
    url, _sim = served
    page = await browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    await page.goto(f"{url}/simulator")
    await page.fill("#new-name", "一个名字很长很长很长很长很长很长很长很长很长很长的客户")
    await page.fill("#new-hello", "在小红书上看到你们发的那篇关于新款车型的长文章，想了解一下")
    await page.press("#new-hello", "Enter")
    await page.locator("#phone-log").get_by_text("在小红书上看到", exact=False).wait_for()
    await page.click("[data-ff='1m']")
    await page.locator("#phone-log").get_by_text("欢迎语", exact=False).first.wait_for()
    assert not await page.locator("#console").is_visible(), "one pane at a time"
    await page.evaluate("request('/sim/say', {handle: 'nobody', text: '在吗'})")
    assert await page.text_content("#error") == "请先在手机上加这位客户为好友", "a refusal in Chinese"
    await page.click("#tab-console")
    await page.fill("#rep-text", "/help")
    await page.press("#rep-text", "Enter")
    await page.locator("#console-log").get_by_text("命令回复", exact=False).first.wait_for()
    for tab in ("#tab-phone", "#tab-console", "#tab-card"):
        await page.click(tab)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{tab}: the page is {width}px wide"
        for control in await page.locator("button, input, select, a").all():
            if await control.is_visible():
                box = await control.bounding_box()
                assert box["height"] >= 40, (tab, await control.evaluate("e => e.outerHTML"), box)
        await assert_readable(page)


# -- the dashboard ----------------------------------------------------------------------------------

# every visible text node's colour (SVG: its fill) against the background it sits on (ancestors'
# backgrounds blended, white below), as WCAG computes contrast
CONTRAST = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(",").map(parseFloat);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let base = { r: 255, g: 255, b: 255 };
    for (const c of layers.reverse()) {
      const mix = (k) => c[k] * c.a + base[k] * (1 - c.a);
      base = { r: mix("r"), g: mix("g"), b: mix("b") };
    }
    return base;
  };
  const low = [];
  let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest("script, style, title, option")) continue;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (!box.width || !box.height || style.visibility === "hidden") continue;
    const fg = parse(el instanceof SVGElement ? style.fill : style.color);
    const bg = background(el);
    const [a, b] = [luminance(fg), luminance(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    checked += 1;
    if (ratio < 4.5) low.push(`${node.textContent.trim().slice(0, 20)}: ${ratio.toFixed(2)}`);
  }
  return { checked, low };
}"""


async def test_dashboard_on_a_laptop_and_a_phone(served: tuple[str, Simulation], browser: Any) -> None:
    url, sim = served
    await seed_three_days(sim)
    for viewport in (LAPTOP, PHONE, {"width": 360, "height": 740}):
        page = await browser.new_page(viewport=viewport, is_mobile=viewport is not LAPTOP)
        await page.goto(f"{url}/dashboard")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"the dashboard is {width}px wide at {viewport['width']}px"
        await assert_readable(page)
        text = await page.evaluate("document.body.innerText")
        for internal in ("command_reply", "authority", "logged in", "stranger", "dormant"):
            assert internal not in text, internal
        # the trends, drawn from the seeded days: 王五 added the rep at 00:30 Tuesday local time
        week = page.locator("#trends-7 figure[data-measure='new_friends']")
        assert await week.get_attribute("data-total") == "3"
        bars = {
            await bar.get_attribute("data-day"): await bar.get_attribute("data-count")
            for bar in await week.locator("svg rect").all()
        }
        assert len(bars) == 7 and bars["2026-11-23"] == "2" and bars["2026-11-24"] == "1"
        assert bars["2026-11-25"] == "0" and await week.locator("svg").is_visible()
        assert "合计 3" in await week.text_content()
        replied = page.locator("#trends-30 figure[data-measure='replied']")
        assert (
            await replied.locator("svg rect").count() == 30
            and await replied.get_attribute("data-total") == "4"
        )
        funnel = page.locator("#funnel-table tr[data-stage='potential'] [data-conversion]")
        assert (await funnel.text_content()).strip().startswith("67%")
        assert "李四" in await page.locator("#upcoming").text_content(), "a name, not an id"
        assert "李四" in await page.locator("#owed").text_content()
        icon = await page.evaluate("document.querySelector('link[rel=icon]').href")
        assert icon.startswith("data:image/svg+xml")
        await page.close()


async def in_view(page: Any, selector: str) -> bool:
    """The element is on screen and the page is still scrolled (a reload would start at the top)."""
    script = "s => { const r = document.querySelector(s).getBoundingClientRect();"
    script += " return window.scrollY > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }"
    return bool(await page.evaluate(script, selector))


async def test_dashboard_filters_explain_a_bad_value_in_place(
    served: tuple[str, Simulation], browser: Any
) -> None:
    url, sim = served
    await seed_three_days(sim)
    page = await browser.new_page(viewport=PHONE, is_mobile=True)
    await page.goto(f"{url}/dashboard")
    await page.locator("#f-silent").scroll_into_view_if_needed()
    await page.evaluate("window.results = document.getElementById('customer-results')")
    await page.fill("#f-silent", "一周")
    await page.press("#f-silent", "Enter")
    error = page.locator("#err-silent_days")
    await error.wait_for()
    assert "沉默天数请填 0 到 3650 之间的整数" in await error.text_content()
    assert await page.input_value("#f-silent") == "一周", "the value typed is kept"
    assert await page.get_attribute("#f-silent", "aria-invalid") == "true"
    assert await in_view(page, "#f-silent"), "the answer shows where the form is: no jump to the top"
    assert "silent_days=" in page.url, "the address keeps the filter (reload, share)"
    same = await page.evaluate("document.getElementById('customer-results') === window.results")
    assert same, "the live region stays in place, so a screen reader announces the new results"
    await assert_readable(page)

    await page.fill("#f-silent", "")
    await page.select_option("#f-stage", "intent")
    await page.click("#filter-button")
    await page.locator("#customers-title", has_text="客户（共 1 位）").wait_for()
    assert await page.locator("#customers").get_by_text("张三").is_visible()
    assert await page.locator("#err-silent_days").count() == 0
    assert await page.input_value("#f-stage") == "intent"
    assert await in_view(page, "#f-stage")

    await page.goto(f"{url}/dashboard?stage=nope&tag=层级:Z")  # typed into the address
    assert "没有“nope”这个阶段" in await page.text_content("#err-stage")
    assert await page.locator("#err-tag").is_visible()
    assert await page.input_value("#f-tag") == "层级:Z"
    await page.close()


async def test_dashboard_text_contrast_is_at_least_4_5(served: tuple[str, Simulation], browser: Any) -> None:
    url, sim = served
    await seed_three_days(sim)
    for viewport in (LAPTOP, PHONE):
        page = await browser.new_page(viewport=viewport)
        await page.goto(f"{url}/dashboard?silent_days=x&date=bad")  # the error colours too
        result = await page.evaluate(CONTRAST)
        assert result["checked"] > 100 and result["low"] == [], result["low"]
        # the check can fail: light grey text on white is caught
        await page.evaluate(
            "document.body.insertAdjacentHTML('beforeend', '<p style=\"color:#aaa\">浅灰色文字</p>')"
        )
        assert [line.split(":")[0] for line in (await page.evaluate(CONTRAST))["low"]] == ["浅灰色文字"]
        await page.close()


async def test_simulator_text_contrast_is_at_least_4_5(served: tuple[str, Simulation], browser: Any) -> None:
    url, _sim = served
    for viewport in (LAPTOP, PHONE):
        page = await browser.new_page(viewport=viewport)
        await page.goto(f"{url}/simulator")
        await page.fill("#new-name", "张三")
        await page.fill("#new-hello", "小红书看到的")
        await page.click("#add")
        await page.click("[data-ff='1m']")  # chat bubbles, the console and the card on screen too
        await page.locator("#phone-log").get_by_text("小红书", exact=False).first.wait_for()
        result = await page.evaluate(CONTRAST)
        assert result["checked"] > 20 and result["low"] == [], result["low"]
        await page.close()
