"""Hot leads: a customer ready to buy ("什么时候能提车？", or "1" to a countdown's 回复“1”我马上安排)
is worth more than any push. The rep's console gets an alert at once (who, the words, why it is hot,
one next step: a reply to ``/send`` and the stage to set); the customer's countdown waits for the
rep's decision; and if the rep has not written to the customer ``signals.hot_lead_nudge_minutes``
later (working hours), one nudge.

Everything is planned inside the inbound event's transaction (alert and nudge are outbox rows with
keys from the customer's message id), so a replayed message finds it all or none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.hours import WorkingCalendar
from bot.domain.kinds import Kind
from bot.domain.stages import Pipeline
from bot.services.alerts import who
from bot.services.objections import ObjectionService
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.services.sequences import SequenceService
from bot.transport.base import TextMessage
from storage.models import Customer, ScheduledMessage
from storage.repositories import Customers, Events, Outbox

SIGNAL = Kind.SIGNAL
BUYING_SIGNAL = "buying_signal"
# an alert waits this long in the outbox when the account is offline; a nudge this long past its time
ALERT_VALID = timedelta(days=1)
NUDGE_VALID = timedelta(hours=12)

# why a buying signal is hot, in the rep's words: the first cue the message contains
_CUES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("提车", "交车", "发货", "到货", "送货", "上门", "安装", "入住"), "问到了交付的安排"),
    (
        ("付款", "转账", "定金", "订金", "首付", "全款", "分期", "刷卡", "支付", "打款", "开票", "发票"),
        "问到了怎么付款",
    ),
    (
        ("下单", "订购", "签约", "合同", "报名", "预约", "锁定", "名额", "怎么买", "在哪买", "拍下"),
        "准备下单了",
    ),
    (("什么时候", "哪天", "几号", "多久", "几点"), "在问具体时间"),
)


def why_hot(text: str) -> str:
    """Why a message read as a buying signal is hot, in one Chinese phrase."""
    for cues, reason in _CUES:
        if any(cue in text for cue in cues):
            return f"TA{reason}，已经在考虑成交"
    return "TA在问成交的具体安排，这是购买信号"


@dataclass(frozen=True)
class HotLead:
    alert_id: int | None  # the console alert to send once committed (None: reported already)
    nudge_at: datetime | None  # when the nudge is due


class HotLeads:
    def __init__(
        self, clock: Clock, config: Config, sequences: SequenceService, objections: ObjectionService
    ) -> None:
        self.clock = clock
        self.config = config
        self.sequences = sequences
        self.objections = objections
        self.pipeline = Pipeline(config.stages)

    async def flag(
        self,
        session: AsyncSession,
        customer: Customer,
        message: TextMessage,
        why: str,
        *,
        source: str,
        offer_script: bool,
    ) -> HotLead:
        """Part of the inbound event's transaction. ``why`` is the reason the rep reads; ``source``
        what made it hot (the reading, or a kept promise); ``offer_script``: False when the message
        also raised an objection (its suggestion numbers the replies for /send)."""
        assert customer.id is not None
        now = self.clock.now()
        account_id = customer.account_id
        held = await self.sequences.hold_countdown(session, customer, "hot lead: waiting for the rep")
        offered = await self.objections.offer_signal_reply(
            session,
            customer,
            message,
            BUYING_SIGNAL,
            "hot_lead",
            {"why": why, "source": source, "countdown_held": held},
            offer=offer_script,
        )
        text = self._alert_text(customer, message.text, why, offered.text, offered.number, held, source)
        key = message_key(account_id, SIGNAL, BUYING_SIGNAL, message.message_id)
        alert_id = await Outbox(session).plan_returning_id(
            outbox_row(
                account_id=account_id,
                customer_id=None,  # a console message goes out even about a deleted customer
                kind=SIGNAL,
                key=key,
                due=now,
                not_after=now + ALERT_VALID,
                now=now,
                context={"signal": BUYING_SIGNAL, "text": text, "about": customer.id},
            )
        )
        calendar = WorkingCalendar(self.config.account(account_id).profile.working_hours, self.config.tz)
        nudge_at = calendar.next_open(now + timedelta(minutes=self.config.signals.hot_lead_nudge_minutes))
        await Outbox(session).plan(
            outbox_row(
                account_id=account_id,
                kind=SIGNAL,
                key=f"{key}:nudge",
                step="nudge",
                due=nudge_at,
                not_after=nudge_at + NUDGE_VALID,
                now=now,
                context={
                    "signal": BUYING_SIGNAL,
                    "about": customer.id,
                    "since": now.isoformat(),
                    "said": message.text,
                    "offered": offered.number if offered.text is not None else 0,
                },
            )
        )
        return HotLead(alert_id, nudge_at)

    def _alert_text(
        self,
        customer: Customer,
        said: str,
        why: str,
        reply: str | None,
        number: int,
        held: int,
        source: str,
    ) -> str:
        card = f"#{customer.id}"
        lines = [
            f"【{name(customer)} {card} · {self.pipeline.label(customer.stage)}】想成交了（热线索）：",
            f"“{said}”",
            f"为什么：{why}。",
        ]
        target = self.config.signals.hot_lead_stage
        stage = (
            f"，再 /stage {self.pipeline.label(target)} @{card}"
            if self.pipeline.is_before(customer.stage, target)
            else ""
        )
        if reply is not None:
            lines.append(f"下一步：马上回复TA，发 /send {number} 发出这句{stage}：")
            lines.append(f"{number}. {reply}")
        else:
            lines.append(f"下一步：趁热回复TA（上面的话术建议，/send 编号）{stage}。")
        if held:
            misread = f"；判断错了发 /wrong 购买信号 @{card}，倒计时照常" if source == "reading" else ""
            decide = "等你决定：重新 /countdown 继续，成交了就 /order"
            lines.append(f"TA的倒计时已暂停（{held} 条），{decide}{misread}。")
        return "\n".join(lines)


class SignalComposer:
    """Sends a signal alert as worded when planned; a nudge only while the rep has neither answered
    nor recorded an order."""

    def __init__(self, console_of: Callable[[str], str]) -> None:
        self.console_of = console_of

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        console = self.console_of(row.account_id)
        if "since" not in row.context:
            return Composed(console, str(row.context["text"]))
        about = await Customers(session).get(int(row.context["about"]))
        if about is None or about.deleted_at is not None:
            return None
        since = datetime.fromisoformat(str(row.context["since"]))
        if about.last_outbound_at is not None and about.last_outbound_at >= since:
            return None  # the rep answered
        ordered = await Events(session).latest(about.id, "order") if about.id is not None else None
        if ordered is not None and ordered.at >= since:
            return None  # the rep decided: /order
        waited = round(((row.claimed_at or row.due_at) - since).total_seconds() / 60)
        offered = int(row.context.get("offered") or 0)
        step = f"发 /send {offered} 把建议的回复发出去" if offered else "趁热跟进"
        said = row.context["said"]
        return Composed(
            console, f"{who(about)}的热线索“{said}”已经等了 {_waited(waited)}，你还没回复TA。{step}。"
        )


def name(customer: Customer) -> str:
    return customer.remark or customer.display_name or customer.wechat_id


def _waited(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} 分钟"
    hours, rest = divmod(minutes, 60)
    return f"{hours} 小时{f' {rest} 分钟' if rest else ''}"
