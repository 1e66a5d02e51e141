"""Logging in by QR code over the real WeChat path: the official puppet-service gateway in front of
the official mock puppet shows a code (``--scan``), and salesbot, run as ``salesbot run`` runs it,
prints it, shows it on the dashboard's state, logs in after the scan and tells the supervisor of a
logout."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.qr import qr_text
from bot.runner import Runtime
from bot.transport.base import LoginStatus
from storage.models import ScheduledMessage
from tests.gateway_peer import Gateway, ensure_node_gateway
from tests.test_gateway_e2e import eventually, runtime_for, service_account

pytestmark = pytest.mark.gateway


@pytest.fixture(scope="module", autouse=True)
def node_gateway_installed() -> None:
    ensure_node_gateway()


@pytest.fixture
async def scanning() -> AsyncIterator[Gateway]:
    peer = Gateway(scan=True)
    await peer.start()
    peer.add_friend("boss", "王经理")
    yield peer
    await peer.close()
    assert peer.errors == []


def status(runtime: Runtime) -> LoginStatus | None:
    state = runtime.bot.logins.states.get("acme")
    return None if state is None else state.status


async def test_a_qr_login_over_grpc_is_shown_scanned_logged_in_and_a_logout_alerts(
    scanning: Gateway, tmp_path: Path
) -> None:
    supervisor = {"name": "王经理", "account": "acme", "contact": "boss", "accounts": ["acme"]}
    runtime = runtime_for(tmp_path, [service_account("acme", scanning)], supervisors=[supervisor])
    terminal = io.StringIO()
    runtime.bot.logins.out = terminal
    starting = asyncio.create_task(runtime.start())
    try:
        code = await scanning.wait_for(lambda e: e["event"] == "code")
        await eventually(lambda: status(runtime) == LoginStatus.WAITING)
        assert runtime.bot.logins.states["acme"].qr == code["qrcode"]
        assert qr_text(code["qrcode"]) in terminal.getvalue() and "account acme" in terminal.getvalue()
        assert not starting.done(), "the account waits for the scan"

        scanning.scan_step("scanned")
        await eventually(lambda: status(runtime) == LoginStatus.SCANNED)
        scanning.log_in()
        await asyncio.wait_for(starting, 20)
        assert status(runtime) == LoginStatus.LOGGED_IN and runtime.bot.transports["acme"].connected

        scanning.log_out()
        await eventually(lambda: status(runtime) == LoginStatus.LOGGED_OUT)
        await eventually(lambda: not runtime.bot.transports["acme"].connected)

        async def alert_planned() -> bool:
            async with runtime.bot.db.transaction() as session:
                rows = (await session.exec(select(ScheduledMessage))).all()
            return any(r.kind == "alert" and r.context.get("supervisor") == "王经理" for r in rows)

        await eventually(alert_planned)  # it waits: the supervisor hears through this very account
        scanning.scan_step("waiting")
        await eventually(lambda: status(runtime) == LoginStatus.WAITING)
        scanning.log_in()
        alert = await scanning.wait_for(
            lambda e: e["event"] == "sent" and e["to"] == "boss" and "微信" in e["text"]
        )
        assert "已退出登录" in alert["text"] and "logged" not in alert["text"]
        await asyncio.sleep(1)
        assert len([t for t in scanning.sent_to("boss") if "已退出登录" in t]) == 1, "told once"
    finally:
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await runtime.stop()
