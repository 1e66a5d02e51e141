"""The shims that make wechaty 0.10.7 usable on Python 3.11 with several bots in one process."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from bot.clock import VirtualClock
from bot.transport.base import FriendRequest, InboundEvent
from bot.transport.local_puppet import LocalPuppet
from bot.transport.wechaty_adapter import WechatyTransport
from bot.transport.wechaty_compat import PuppetOptions, Wechaty, new_wechaty_options
from tests.conftest import ROOT


def test_wechaty_imports_on_supported_python() -> None:
    assert sys.version_info >= (3, 11)
    assert issubclass(Wechaty, object) and hash(PuppetOptions()) != hash(PuppetOptions())


def test_two_bots_do_not_share_options() -> None:
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    first = Wechaty(new_wechaty_options(name="a", puppet=LocalPuppet(clock)))
    second = Wechaty(new_wechaty_options(name="b", puppet=LocalPuppet(clock)))
    assert first._options is not second._options
    assert first._options.puppet_options is not second._options.puppet_options
    assert first._options.scheduler is not second._options.scheduler
    assert first.puppet is not second.puppet
    first._options.puppet_options.token = "token-a"
    assert second._options.puppet_options.token is None


async def test_two_bots_keep_separate_contact_pools() -> None:
    """Without the shim the second bot would see the first bot's cached contact (wrong name, wrong puppet)."""
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    seen: dict[str, list[InboundEvent]] = {"a": [], "b": []}
    transports = []
    for name in ("a", "b"):
        puppet = LocalPuppet(clock, self_id=f"{name}-self")

        async def sink(event: InboundEvent, name: str = name) -> None:
            seen[name].append(event)

        transport = WechatyTransport(name, puppet, login_timeout=5)
        await transport.start(sink)
        transports.append((transport, puppet))
    try:
        (ta, pa), (tb, pb) = transports
        pa.request_friendship("same-id", "张三")
        await ta.settle()
        pb.request_friendship("same-id", "李四")
        await tb.settle()
        [a_event], [b_event] = seen["a"], seen["b"]
        assert isinstance(a_event, FriendRequest) and isinstance(b_event, FriendRequest)
        assert (a_event.contact.name, b_event.contact.name) == ("张三", "李四")
        await tb.accept(b_event)
        assert pb.accepted and not pa.accepted
    finally:
        for transport, _ in transports:
            await transport.stop()


def test_pygithub_is_left_out_and_its_stand_ins_refuse_use() -> None:
    """python-wechaty's link-card module imports PyGithub (about 14 MB with what it pulls in);
    salesbot's cards never use it, so a stand-in answers the import and refuses to be used. In a
    fresh interpreter: this one may have loaded the real one (bench/bare_bot.py does)."""
    script = """
import sys
import bot.transport.wechaty_compat
from wechaty.user import url_link
assert url_link.Github.__mro__[1].__name__ == "_NotLoaded", url_link.Github.__mro__
assert "github" not in sys.modules, "the stand-ins left once Wechaty was imported"
assert "nacl" not in sys.modules and "jwt" not in sys.modules
try:
    url_link.Github(login_or_token="t")
except RuntimeError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "does not load PyGithub" in out.stdout


def test_quart_is_left_out_and_the_plugin_manager_serves_nothing() -> None:
    """The plugin manager builds a Quart app for plugins' web pages (Quart with Flask, Werkzeug and
    Hypercorn is about 10 MB); salesbot uses no plugins, so the app is a stand-in with no routes: a
    started manager serves nothing, adding a route is refused, and a later import is the real one."""
    script = """
import asyncio, sys
from bot.transport.wechaty_compat import IsolatedWechaty, new_wechaty_options
from bot.clock import SystemClock
from bot.transport.local_puppet import LocalPuppet
web = ("quart", "quart_cors", "flask", "werkzeug", "hypercorn")
assert not any(m.split(".")[0] in web for m in sys.modules)

async def main() -> None:
    bot = IsolatedWechaty(new_wechaty_options(name="t", puppet=LocalPuppet(SystemClock())))
    manager = bot._plugin_manager
    await manager.start()  # what the login event runs: no routes, so no web server
    manager.scheduler.shutdown(wait=False)
    try:
        manager.app.route("/")
    except RuntimeError as exc:
        print(exc)

asyncio.run(main())
import quart
assert not getattr(quart, "SALESBOT_STAND_IN", False) and quart.Quart.__module__.startswith("quart")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "does not load Quart" in out.stdout
