"""The `service` transport (wechaty-puppet-service over gRPC) fails fast and clearly when it cannot start.

These need no peer; the end-to-end suite against the official Node gateway is tests/test_gateway_e2e.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import NotConnected, TransportError
from bot.transport.base import InboundEvent
from bot.transport.wechaty_adapter import WechatyTransport, former_friend, not_logged_in
from tests.conftest import portable_config_text, write_config


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_endpoint_is_a_clear_error_not_a_dead_event_loop() -> None:
    transport = WechatyTransport(
        "acme",
        "wechaty-puppet-service",
        token="insecure_test",
        endpoint=f"127.0.0.1:{closed_port()}",
        login_timeout=20,
    )

    async def sink(event: InboundEvent) -> None:
        raise AssertionError("no events expected")

    with pytest.raises(TransportError, match=r"account acme: cannot reach the puppet service.*endpoint"):
        await transport.start(sink)
    # the event loop is still alive (python-wechaty would have stopped it)


def test_run_with_unreachable_service_exits_non_zero_naming_the_account(tmp_path: Path) -> None:
    text = portable_config_text()
    config = write_config(tmp_path, text.replace('transport = "local"', 'transport = "service"'))
    env = {
        **os.environ,
        "SALESBOT_DEMO_TOKEN": "insecure_x",
        "SALESBOT_DEMO_ENDPOINT": f"127.0.0.1:{closed_port()}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error: account demo: cannot reach the puppet service" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_failing_account_does_not_stop_the_others(tmp_path: Path) -> None:
    text = portable_config_text()
    second = text[text.index("[[accounts]]") :].replace('id = "demo"', 'id = "acme"', 1)
    second = second.replace('transport = "local"', 'transport = "service"', 1)
    config = tmp_path / "config.toml"
    config.write_text(text + "\n" + second, encoding="utf-8")
    env = {
        **os.environ,
        "SALESBOT_ACME_TOKEN": "insecure_x",
        "SALESBOT_ACME_ENDPOINT": f"127.0.0.1:{closed_port()}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--config", str(config), "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or ("NOT RUNNING" in line and len(lines) > 60):
                break
        output = "".join(lines)
        rest = ""
        if "Press Ctrl-C" in output or "NOT RUNNING" in output:
            process.send_signal(signal.SIGINT)
            rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    output += rest
    assert "account demo: 小林" in output, output
    assert "NOT RUNNING: account acme: cannot reach the puppet service" in output, output
    assert process.returncode == 0, output


@pytest.mark.parametrize(
    ("error", "former"),
    [
        ("Error: c8 is not a friend", True),
        ("(<Status.UNKNOWN: 2>, '消息发送失败：对方不是你的好友', None)", True),
        ("contact deleted", True),
        ("发送失败，被对方删除", True),
        ("rate limited, try later", False),
        ("Error: timeout", False),
    ],
)
def test_a_former_friend_is_recognised_by_what_the_puppet_says(error: str, former: bool) -> None:
    assert former_friend(RuntimeError(error)) is former


class _GRPCError(Exception):
    """Shaped like grpclib's GRPCError as the service puppet raises it: the puppet's message in
    ``message``, its status first in ``args`` (no class of ours to match on)."""

    def __init__(self, message: str) -> None:
        super().__init__("Status.UNKNOWN", message, None)
        self.message = message


class _Refusing:
    """A contact whose every ``say`` fails the way ``error`` says."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.payload = None

    async def ready(self) -> None:
        return None

    async def say(self, message: object) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "logged_out"),
    [
        (RuntimeError("Error: not logged in"), True),
        (_GRPCError("not logged in"), True),
        (_GRPCError("Error: not logged in, no userSelf yet."), True),
        (RuntimeError("(<Status.UNKNOWN: 2>, '账号未登录', None)"), True),
        (RuntimeError("is the account logged in on the service?"), False),
        (RuntimeError("Error: timeout"), False),
    ],
)
def test_not_logged_in_is_recognised_by_what_the_service_puppet_says(
    error: Exception, logged_out: bool
) -> None:
    assert not_logged_in(error) is logged_out


async def test_a_send_refused_as_not_logged_in_waits_for_the_login_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen during handovers: the gateway's account is logged out for a moment. Nothing was
    sent, so the message waits (NotConnected) and the transport logs in again; before, it was a
    definite failure and the customer never got it."""
    transport = WechatyTransport("demo", "wechaty-puppet-service", token="t", endpoint="127.0.0.1:1")
    changes: list[tuple[bool, str]] = []
    transport.on_connection = lambda account, connected, reason: changes.append((connected, reason))
    transport._connected = True
    contact = _Refusing(_GRPCError("Error: not logged in"))
    # Contact is the library's shared class: patched for this test only
    monkeypatch.setattr(transport._bot.Contact, "load", lambda contact_id: contact)
    with pytest.raises(NotConnected, match="not logged in"):
        await transport.send_text("c1", "你好")
    assert not transport.connected
    assert changes and changes[-1][0] is False
