"""Logging an account in: where each account's login stands (for the dashboard), the QR code to
scan printed on the terminal, and the supervisors told in chat when an account logs out or its
login expires.

A puppet that logs in by QR code reports the code, then scanned, then the login; the transport
turns that into :class:`bot.transport.base.LoginEvent` (the SDK stays in the adapter). The state
is kept in memory: it describes this process's live connections. Supervisors hear of an outage
once (the first logout or expired code after a login), however many codes expire meanwhile.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TextIO

from bot.clock import Clock
from bot.config import Config
from bot.domain.kinds import Kind
from bot.qr import qr_text
from bot.services.planning import message_key, outbox_row
from bot.transport.base import LoginEvent, LoginStatus
from storage.db import Database
from storage.repositories import Outbox

log = logging.getLogger(__name__)

# a supervisor's alert waits this long for its sending account to be online
ALERT_VALID = timedelta(days=1)
LOST = (LoginStatus.LOGGED_OUT, LoginStatus.EXPIRED)


@dataclass(frozen=True)
class LoginState:
    status: LoginStatus
    since: datetime
    qr: str = ""  # the code to scan while WAITING


class Logins:
    def __init__(self, db: Database, clock: Clock, config: Config, out: TextIO | None = None) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.out = out
        self.states: dict[str, LoginState] = {}
        self._outage: dict[str, datetime] = {}  # account -> when its reported outage began

    def changed(self, account_id: str, event: LoginEvent) -> LoginState | None:
        """Record what the transport reported. Returns the state when supervisors must be told
        (a logout or an expired code, first of its outage); else None."""
        now = self.clock.now()
        previous = self.states.get(account_id)
        if event.status == LoginStatus.LOGGED_IN and previous is None:
            return None  # logged in without a scan: nothing for the dashboard's login block
        if event.status == LoginStatus.SCANNED and previous is not None and previous.qr:
            state = LoginState(event.status, now, previous.qr)
        else:
            state = LoginState(event.status, now, event.qr)
        self.states[account_id] = state
        if event.status == LoginStatus.WAITING:
            self._print_code(account_id, event.qr)
        elif event.status == LoginStatus.LOGGED_IN:
            self._outage.pop(account_id, None)
            log.info("account %s: logged in", account_id)
        elif event.status in LOST:
            if event.status == LoginStatus.EXPIRED:  # a logout is logged with the connection
                log.warning("account %s: the login QR code expired before a scan", account_id)
            if account_id not in self._outage:
                self._outage[account_id] = now
                return state
        return None

    def _print_code(self, account_id: str, qr: str) -> None:
        log.info("account %s: waiting for a QR code scan (on the terminal and the dashboard)", account_id)
        out = self.out if self.out is not None else sys.stdout
        nickname = self.config.account(account_id).profile.nickname
        out.write(
            f"\naccount {account_id} ({nickname}): scan this QR code with the account's WeChat "
            f"to log in (also on the dashboard)\n{qr_text(qr)}\n"
        )
        out.flush()

    async def alert_supervisors(self, account_id: str, state: LoginState) -> list[int]:
        """Plan an alert to each supervisor who oversees ``account_id``, in one transaction, keyed
        by the outage (never twice). Returns the planned rows' ids to send now."""
        supervisors = [s for s in self.config.supervisors if account_id in s.accounts]
        if not supervisors:
            return []
        text = login_lost(self.config.account(account_id).profile.nickname, account_id, state.status)
        now = self.clock.now()
        ids: list[int] = []
        async with self.db.transaction() as session:
            outbox = Outbox(session)
            for supervisor in supervisors:
                outage = state.since.isoformat()  # one alert per supervisor per outage
                who = supervisor.name
                key = message_key(supervisor.account, Kind.ALERT, "login", account_id, who, outage)
                planned = await outbox.plan_returning_id(
                    outbox_row(
                        account_id=supervisor.account,
                        kind=Kind.ALERT,
                        key=key,
                        due=now,
                        not_after=now + ALERT_VALID,
                        now=now,
                        context={"text": text, "supervisor": supervisor.name},
                    )
                )
                if planned is not None:
                    ids.append(planned)
        return ids


def login_lost(nickname: str, account_id: str, status: LoginStatus) -> str:
    """What a supervisor reads when a rep's account stops being logged in."""
    what = "已退出登录" if status == LoginStatus.LOGGED_OUT else "登录二维码已过期，还没有登录"
    return (
        f"⚠ 销售 {nickname}（账号 {account_id}）的微信{what}，自动消息暂停发送。"
        "请提醒TA打开看板或终端，用这个微信扫描二维码重新登录。"
    )
