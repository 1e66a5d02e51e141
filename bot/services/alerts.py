"""What the rep reads in their console about customers: alerts, objection suggestions and
owed-reply nudges, planned as outbox rows, plus the Chinese wording of every alert.

Console messages are planned inside the caller's transaction (an inbound event, a dispatch), so
they are never half-applied: they exist exactly when the change they report committed. The caller
sends them once it has committed (:meth:`bot.services.outbox.Dispatcher.run_due` with their ids);
when the account is offline they wait in the outbox and go out when it reconnects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.display import kind_name, reason_text, step_name
from bot.domain.hours import WorkingCalendar
from bot.domain.kinds import Kind
from bot.domain.limits import MAX_NAME_CHARS, MAX_QUOTE_CHARS, clip
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from storage.models import Customer, ScheduledMessage
from storage.repositories import DELIVERY_UNKNOWN, Outbox, OutgoingLog

ALERT = Kind.ALERT
OWED = Kind.OWED
SUGGESTION = Kind.SUGGESTION

# a console message that could not go out (the account was offline) waits this long in the outbox
CONSOLE_VALID = timedelta(days=3)
# a suggestion is worth reading only while the conversation is warm
SUGGESTION_VALID = timedelta(hours=1)


class ConsoleMessages:
    """Plans messages to a rep's console; the conversation is resolved when they are sent."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def alert(
        self,
        session: AsyncSession,
        account_id: str,
        text: str,
        key: str,
        customer_id: int | None = None,
        *,
        unless_delivered: str | None = None,
    ) -> int | None:
        """``key`` makes the alert idempotent: the same situation is reported once. It is dropped
        at send time if the message keyed ``unless_delivered`` has meanwhile proved delivered (its
        echo came back). Returns the planned row's id (None: reported already)."""
        return await self._plan(
            session,
            account_id,
            ALERT,
            message_key(account_id, ALERT, key),
            text,
            customer_id,
            unless_delivered,
        )

    async def suggestion(
        self, session: AsyncSession, account_id: str, text: str, message_id: str, customer_id: int
    ) -> int | None:
        """Scripts suggested for the customer's message ``message_id``, once per message."""
        key = message_key(account_id, SUGGESTION, message_id)
        return await self._plan(
            session, account_id, SUGGESTION, key, text, customer_id, None, valid=SUGGESTION_VALID
        )

    async def card(
        self,
        session: AsyncSession,
        account_id: str,
        kind: Kind,
        key: str,
        text: str,
        customer_id: int,
        valid: timedelta = CONSOLE_VALID,
    ) -> int | None:
        """A card about a customer with scripts to choose from (a reactivation card), once per
        ``key`` (built with :func:`message_key` from domain values). Returns the row id (None:
        planned already)."""
        return await self._plan(session, account_id, kind, key, text, customer_id, None, valid=valid)

    async def _plan(
        self,
        session: AsyncSession,
        account_id: str,
        kind: Kind,
        key: str,
        text: str,
        customer_id: int | None,
        unless_delivered: str | None,
        *,
        valid: timedelta = CONSOLE_VALID,
    ) -> int | None:
        now = self.clock.now()
        return await Outbox(session).plan_returning_id(
            outbox_row(
                account_id=account_id,
                # a console message must go out even when it reports a deleted customer
                customer_id=None,
                kind=kind,
                key=key,
                due=now,
                not_after=now + valid,
                now=now,
                context={"text": text, "unless_delivered": unless_delivered, "about": customer_id},
            )
        )


class ConsoleTextComposer:
    """Sends a console message as it was worded when planned: to the account's console, or to a
    supervisor's chat when the row names one (``context["supervisor"]``: an account logged out)."""

    def __init__(
        self, console_of: Callable[[str], str], supervisor_chat: Callable[[str], str] | None = None
    ) -> None:
        self.console_of = console_of
        self.supervisor_chat = supervisor_chat

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        settled_by = row.context.get("unless_delivered")
        if settled_by:
            sent = await OutgoingLog(session).by_key(str(settled_by))
            if sent is not None and sent.status == "sent":
                return None  # the doubt this alert reports has been settled
        supervisor = row.context.get("supervisor")
        if supervisor and self.supervisor_chat is not None:
            return Composed(self.supervisor_chat(str(supervisor)), str(row.context["text"]))
        return Composed(self.console_of(row.account_id), str(row.context["text"]))


class OwedReplyNudges:
    """Plans a console nudge for when a customer's message would become an owed reply; at send time
    it is dropped if the rep has written to the customer since."""

    def __init__(self, clock: Clock, config: Config) -> None:
        self.clock = clock
        self.config = config

    async def customer_wrote(
        self, session: AsyncSession, customer: Customer, message_id: str
    ) -> datetime | None:
        """Part of the inbound event's transaction. Returns when the nudge is due (None: off)."""
        if not self.config.digest.owed_nudge or customer.id is None:
            return None
        now = self.clock.now()
        calendar = WorkingCalendar(
            self.config.account(customer.account_id).profile.working_hours, self.config.tz
        )
        due = calendar.next_open(now + timedelta(minutes=self.config.digest.owed_reply_minutes))
        await Outbox(session).plan(
            outbox_row(
                account_id=customer.account_id,
                customer_id=customer.id,
                kind=OWED,
                key=message_key(customer.account_id, OWED, message_id, customer_id=customer.id),
                step=message_id,
                due=due,
                not_after=due + timedelta(hours=12),
                now=now,
                context={"since": now.isoformat()},
            )
        )
        return due


class OwedReplyComposer:
    def __init__(self, console_of: Callable[[str], str]) -> None:
        self.console_of = console_of

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None
        since = datetime.fromisoformat(str(row.context["since"]))
        if customer.last_outbound_at is not None and customer.last_outbound_at >= since:
            return None  # the rep answered
        if customer.last_inbound_at is not None and customer.last_inbound_at > since:
            return None  # a later message has its own nudge
        waited = round(((row.claimed_at or row.due_at) - since).total_seconds() / 60)
        return Composed(
            self.console_of(row.account_id),
            f"{who(customer)}的消息已等了 {waited} 分钟，还没有回复。",
            kind=ALERT,
        )


# -- wording: every alert a rep reads, in one place ------------------------------------------------


def heading(customer: Customer, stage: str) -> str:
    """A card's first line about a customer: name, the card id commands take, and the stage label."""
    name = clip(customer.remark or customer.display_name or customer.wechat_id, MAX_NAME_CHARS)
    return f"【{name} #{customer.id} · {stage}】"


def who(customer: Customer) -> str:
    """How the console names a customer: their remark or name, and the card id for commands."""
    return f"【{clip(customer.remark or customer.display_name, MAX_NAME_CHARS)} #{customer.id}】"


def _said(customer: Customer, text: str, what: str) -> str:
    return f"{who(customer)}说“{clip(text, MAX_QUOTE_CHARS)}”，{what}"


def opted_out(customer: Customer, text: str, held: int) -> str:
    return _said(
        customer,
        text,
        f"已暂停对TA的全部自动消息（{held} 条待发）。需要恢复请发 /resume @#{customer.id}；"
        f"判断错了请发 /wrong 退订 @#{customer.id}",
    )


def pushes_stopped(customer: Customer, text: str, held: int) -> str:
    return _said(
        customer,
        text,
        f"不想被频繁催促：已停止倒计时和跟进提醒（{held} 条），售后关怀照常。"
        f"恢复推送请发 /resume @#{customer.id}；判断错了请发 /wrong 别催了 @#{customer.id}",
    )


def deleted_rep(customer: Customer, stage: str, tags: list[str]) -> str:
    return (
        f"{who(customer)}已不是好友（可能删除了你），已取消对TA的全部待发消息。\n"
        f"阶段：{stage}；来源：{customer.source_channel or '未知'}；标签：{'、'.join(tags) or '无'}"
    )


_TEMPLATE_FILE = re.compile(r"[\w./-]+\.(?:j2|toml)")


def plain_cause(reason: str) -> str:
    """The cause of a failed send in plain Chinese; a raw transport or internal error never
    reaches the rep (it is in the log); a broken template is named by its file, for the admin."""
    template = _TEMPLATE_FILE.search(reason)
    if template is not None:
        return f"模板 {template.group(0)} 有误，请管理员运行 salesbot check 检查"
    return reason_text(reason, default="微信没有接受这条消息")


def undeliverable(row: ScheduledMessage, customer: Customer | None, reason: str, unsent: str = "") -> str:
    """A planned message that did not (or may not have) gone out: whether delivery is in doubt,
    and a plain cause. ``unsent``: only this part is missing (the earlier parts reached the
    customer), so the rep adds it rather than sending the whole message again."""
    # an automated message's step (成交后第3天, 提前1天) tells the rep which one; a welcome's or a
    # reply's step is an internal id
    named = step_name(row.kind, row.step)
    step = f"（{named}）" if named else ""
    what = f"{kind_name(row.kind)}消息{step}"
    if unsent:
        maybe = "可能" if DELIVERY_UNKNOWN in reason else ""
        cause = "发送时连接中断，无法确认对方是否收到" if maybe else plain_cause(reason)
        outcome = (
            f"只发出了一部分：前面的文字已发出，后面的{unsent}{maybe}没有发出（{cause}）。"
            "请到聊天里看一眼，需要的话只补发这一部分，不用整条重发。"
        )
    elif DELIVERY_UNKNOWN in reason:
        outcome = "可能没有发出：发送时连接中断，无法确认对方是否收到。请到聊天里看一眼，需要的话手动补发。"
    else:
        outcome = f"没有发出：{plain_cause(reason)}。"
    if customer is not None:
        return f"{who(customer)}的{what}{outcome}"
    return f"{what}{outcome}"
