"""Logging an account in by QR code on the in-process puppet: the transport reports the code, the
scan and the login; the terminal shows the code as text, the dashboard as inline SVG with the state
in Chinese; a logout alerts the supervisor in chat once per outage."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.errors import TransportError
from bot.qr import qr_svg, qr_text
from bot.transport.base import LoginEvent, LoginStatus
from bot.transport.local_puppet import LocalPuppet
from bot.transport.wechaty_adapter import WechatyTransport
from bot.web.app import create_app
from tests.conftest import MONDAY_10AM, make_config
from tests.harness import Harness

TOKEN = "qr-test-web-token"


def two_reps_one_supervisor() -> Any:
    """demo2 is the account that logs out; the supervisor hears of it through demo."""
    base = make_config()
    first = base.accounts[0].model_dump(mode="json")
    second = {**first, "id": "demo2", "profile": {**first["profile"], "nickname": "小王"}}
    supervisor = {**base.supervisors[0].model_dump(mode="json"), "accounts": ["demo", "demo2"]}
    return make_config({"accounts": [first, second], "supervisors": [supervisor]})


@pytest.fixture
async def team(db_url: str) -> AsyncIterator[Harness]:
    async with Harness(two_reps_one_supervisor(), MONDAY_10AM, database_url=db_url) as sim:
        sim.bot.logins.out = io.StringIO()  # the terminal
        yield sim


async def settle(sim: Harness) -> None:
    """Let the events be handled and collect what was sent (the simulation's output)."""
    await sim.advance(timedelta(seconds=1))


def status_of(sim: Harness, account_id: str) -> LoginStatus:
    return sim.bot.logins.states[account_id].status


def alerts_to_supervisor(sim: Harness) -> list[str]:
    return [m["text"] for m in sim.sent("alert", "supervisor:王经理")]


async def test_transport_reports_code_scan_and_login_in_order() -> None:
    from bot.clock import VirtualClock

    puppet = LocalPuppet(VirtualClock(MONDAY_10AM), self_id="rep", needs_scan=True)
    transport = WechatyTransport("acme", puppet, login_timeout=10)
    seen: list[LoginEvent] = []
    transport.on_login = lambda account, event: seen.append(event)

    async def sink(event: Any) -> None:
        pass

    starting = asyncio.create_task(transport.start(sink))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert [e.status for e in seen] == [LoginStatus.WAITING] and seen[0].qr.startswith("https://")
    assert not starting.done(), "start waits for the scan"
    puppet.scan()
    puppet.confirm()
    await asyncio.wait_for(starting, 5)
    assert [e.status for e in seen] == [LoginStatus.WAITING, LoginStatus.SCANNED, LoginStatus.LOGGED_IN]
    assert transport.connected
    await transport.stop()


async def test_a_code_nobody_scans_expires_at_the_login_timeout() -> None:
    from bot.clock import VirtualClock

    puppet = LocalPuppet(VirtualClock(MONDAY_10AM), self_id="rep", needs_scan=True)
    transport = WechatyTransport("acme", puppet, login_timeout=0.3)
    seen: list[LoginStatus] = []
    transport.on_login = lambda account, event: seen.append(event.status)

    async def sink(event: Any) -> None:
        pass

    with pytest.raises(TransportError, match="no login within"):
        await transport.start(sink)
    assert seen == [LoginStatus.WAITING, LoginStatus.EXPIRED]


async def test_logout_alerts_the_supervisor_once_and_a_scan_logs_back_in(team: Harness) -> None:
    demo2 = team.puppets["demo2"]
    demo2.go_offline()
    await settle(team)
    [alert] = alerts_to_supervisor(team)
    assert "小王" in alert and "已退出登录" in alert and "扫描二维码" in alert
    assert not re.search(r"logged|logout|scan|login", alert), "no internal words in chat"

    code = demo2.show_code()
    await settle(team)
    terminal = team.bot.logins.out
    assert isinstance(terminal, io.StringIO)
    printed = terminal.getvalue()
    assert "account demo2" in printed and qr_text(code) in printed
    demo2.expire_code()  # the code times out: same outage, no second alert
    demo2.show_code()
    await settle(team)
    assert len(alerts_to_supervisor(team)) == 1
    demo2.scan()
    await settle(team)
    assert status_of(team, "demo2") == LoginStatus.SCANNED
    demo2.confirm()
    await settle(team)
    assert status_of(team, "demo2") == LoginStatus.LOGGED_IN
    assert team.bot.transports["demo2"].connected

    demo2.go_offline()  # a new outage after a login is told again
    await team.advance(timedelta(minutes=1))
    assert len(alerts_to_supervisor(team)) == 2


async def test_the_dashboard_shows_the_code_as_svg_and_the_state_in_chinese(team: Harness) -> None:
    client = TestClient(TestServer(create_app(team.bot.reports, token=TOKEN, token_for_reads=False)))
    await client.start_server()
    try:
        before = await (await client.get("/dashboard")).text()
        assert 'id="logins"' not in before, "accounts that never needed a scan show no login block"
        demo2 = team.puppets["demo2"]
        demo2.go_offline()
        code = demo2.show_code()
        await settle(team)
        page = await (await client.get("/dashboard")).text()
        assert 'data-login-account="demo2" data-login="waiting"' in page and "等待扫码" in page
        assert qr_svg(code, "小王 的微信登录二维码") in page
        assert 'role="img"' in page and code not in page.replace(qr_svg(code, "小王 的微信登录二维码"), "")
        assert not re.search(r"\d{4}-\d\d-\d\dT", page)
        assert "fetch('/api/logins'" in page, "the page reloads itself once the code is scanned"
        [state] = await (await client.get("/api/logins")).json()
        assert (state["id"], state["status"], state["label"]) == ("demo2", "waiting", "等待扫码")
        demo2.scan()
        await settle(team)
        page = await (await client.get("/dashboard")).text()
        assert 'data-login="scanned"' in page and "在手机上确认登录" in page
        assert "扫描下方二维码" not in page, "scanned already: the rep is not asked to scan again"
        demo2.expire_code()
        await settle(team)
        page = await (await client.get("/dashboard")).text()
        assert 'data-login="expired"' in page and "二维码已过期" in page and '<svg class="qr"' not in page
        demo2.confirm()
        await settle(team)
        page = await (await client.get("/dashboard")).text()
        assert 'data-login="logged_in"' in page and "已登录" in page
        assert "fetch('/api/logins'" not in page, "nothing to wait for"
    finally:
        await client.close()


async def test_a_new_code_in_the_same_minute_still_reloads_the_page(team: Harness) -> None:
    """The page reloads when what it shows is stale: a fresh code counts, even within the minute
    the dashboard's times show (the old code would no longer log in)."""
    client = TestClient(TestServer(create_app(team.bot.reports, token=TOKEN, token_for_reads=False)))
    await client.start_server()
    try:
        demo2 = team.puppets["demo2"]
        demo2.go_offline()
        demo2.show_code()
        await settle(team)
        first = re.findall(r"const shown = (.*);", await (await client.get("/dashboard")).text())
        demo2.show_code()  # the puppet renewed its code a few seconds later
        await settle(team)
        second = re.findall(r"const shown = (.*);", await (await client.get("/dashboard")).text())
        assert first and second and first != second
    finally:
        await client.close()


def test_the_svg_is_a_scannable_matrix_with_a_label() -> None:
    svg = qr_svg("https://login.weixin.qq.com/l/x", "小王 的微信登录二维码")
    assert svg.startswith('<svg class="qr" viewBox="0 0 ') and 'aria-label="小王 的微信登录二维码"' in svg
    assert "<script" not in svg and "http://www.w3.org/2000/svg" in svg
    assert qr_svg("a", 'x" onload="y').count('"') % 2 == 0 and 'onload="y' not in qr_svg("a", 'x" onload="y')
