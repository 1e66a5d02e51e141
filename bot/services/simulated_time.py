"""Simulated time: the browser simulator's fast-forward, only on a database that is a simulation.

Fast-forward moves the bot's clock ahead and everything it then writes is dated in that future;
real time on the same database would find follow-ups past their validity and expire them. So a
database is one or the other, for good, and an event row says which:

* ``live_start``: a service (real WeChat) account started on it. Fast-forward is refused from then
  on, and whenever the configuration has a service account at all (they share the bot's clock).
* ``clock_advanced``: the simulator fast-forwarded it (one row per step, with the times). A service
  account then refuses to start on it (``database.url`` names another database for real use), and
  ``salesbot run`` resumes at the simulated time it had reached: time never goes backwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.clock import Clock, OffsetClock
from bot.config import Config
from bot.errors import ConfigError
from storage.db import Database
from storage.repositories import Events

log = logging.getLogger(__name__)

LIVE_START = "live_start"
CLOCK_ADVANCED = "clock_advanced"


@dataclass(frozen=True)
class FastForwardRefused:
    """Why the simulator may not fast-forward, in the page's language (Chinese) and in English."""

    zh: str
    en: str

    @property
    def message(self) -> str:
        return f"{self.zh} / {self.en}"


class SimulatedTimeService:
    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self.db = db
        self.clock = clock
        self.config = config

    def _service_accounts(self) -> list[str]:
        return [a.id for a in self.config.accounts if a.transport == "service"]

    async def on_start(self) -> None:
        """At startup, after the account rows exist: a service account marks the database live, and
        refuses a database the simulator fast-forwarded (raises ConfigError). Local accounts on real
        time (``salesbot run``) resume a simulation at the time it had reached."""
        service = self._service_accounts()
        async with self.db.transaction() as session:
            events = Events(session)
            advanced = await events.latest_of_kind(CLOCK_ADVANCED)
            if not service:
                if advanced is not None and isinstance(self.clock, OffsetClock):
                    self.clock.set(advanced.at)
                return
            if advanced is not None:
                raise ConfigError(
                    f"database.url: the browser simulator fast-forwarded this database (to "
                    f"{advanced.at.astimezone(self.config.tz):%Y-%m-%d %H:%M}), so its messages are "
                    f"dated in the future and real time would expire them; account(s) "
                    f"{', '.join(service)} use real WeChat: give them a database of their own"
                )
            now = self.clock.now()
            for account_id in service:  # once per account and database (a replay is ignored)
                await events.record(account_id, LIVE_START, now, external_id=LIVE_START)

    async def fast_forward_refused(self) -> FastForwardRefused | None:
        """None when the simulator may move the clock ahead; otherwise why not."""
        service = self._service_accounts()
        if service:
            names = "、".join(service)
            return FastForwardRefused(
                zh=f"快进已关闭：账号 {names} 连着真实微信，快进会把它们的时间也往前拨，"
                "真实客户的消息会过期。只在纯模拟（全部为 local）的配置和数据库上快进。",
                en=f"fast-forward is off: account(s) {', '.join(service)} use real WeChat (service "
                "transport) and share this clock; real customers' messages would expire. "
                "Fast-forward only with local accounts on a simulation database.",
            )
        async with self.db.transaction() as session:
            live = await Events(session).first_of_kind(LIVE_START)
        if live is not None:
            since = f"{live.at.astimezone(self.config.tz):%Y-%m-%d}"
            return FastForwardRefused(
                zh=f"快进已关闭：这个数据库自 {since} 起用于真实微信（账号 {live.account_id}），"
                "快进会让真实客户的消息过期。请为模拟另用一个数据库（[database] url）。",
                en=f"fast-forward is off: this database has served real WeChat since {since} "
                f"(account {live.account_id}); fast-forward would expire real customers' messages. "
                "Simulate on another database ([database] url).",
            )
        return None

    async def advanced(self, account_id: str, before: datetime, after: datetime) -> None:
        """Record a fast-forward step: from now on the database is a simulation."""
        async with self.db.transaction() as session:
            await Events(session).record(
                account_id,
                CLOCK_ADVANCED,
                after,
                text=f"simulator fast-forward by {after - before}",
                data={"from": before.isoformat(), "to": after.isoformat()},
            )
        log.info("simulator: clock moved ahead by %s; this database is now a simulation", after - before)
