"""``salesbot run``: start every configured account and dispatch the outbox on real time."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.app import SalesBot
from bot.clock import SystemClock
from bot.config import Config
from bot.timers import DISPATCH_POLL, DISPATCH_WAKE, Timers

log = logging.getLogger("salesbot")


def banner(config: Config, config_path: str) -> str:
    lines = [
        "salesbot is running",
        f"  config:    {config_path}",
        f"  timezone:  {config.timezone}",
        f"  database:  {config.database.url}",
    ]
    for account in config.accounts:
        where = (
            "embedded local puppet (no WeChat account)"
            if account.transport == "local"
            else f"puppet service at {account.service_endpoint()}"
        )
        lines.append(
            f"  account {account.id}: {account.profile.nickname} ({account.profile.role}) via {where}"
        )
    if any(a.transport == "local" for a in config.accounts):
        lines += [
            "",
            "The local puppet has no phone attached. To see the bot at work, play a scripted conversation:",
            "  salesbot simulate examples/welcome.toml",
            'Real WeChat: set transport = "service" with a token and endpoint in config.toml.',
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def run(config: Config, config_path: str) -> None:
    bot = SalesBot(config, SystemClock())
    timers = Timers(config.tz)

    async def dispatch() -> None:
        await bot.run_due()

    bot.wake_listeners.append(lambda due: timers.at(DISPATCH_WAKE, due, dispatch))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bot.start()
        timers.every(DISPATCH_POLL, config.dispatch.poll_seconds, dispatch)
        for supervisor in config.supervisors:  # the digest row is due then; this cron wakes the dispatcher
            timers.daily(f"digest:{supervisor.name}", supervisor.at, dispatch)
        timers.start()
        await dispatch()
        print(banner(config, config_path), flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        timers.shutdown()
        await bot.stop()
