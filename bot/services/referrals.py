"""Referrals: a customer who brings someone else ("我同事也想买，能一起吗") is the start of a KOC.

The rep's console gets an alert at once (who, the words, a thank-you reply to ``/send``, taking the
account's next suggestion number) and the referral is recorded (a ``referral`` event: the KOC rules
count them, the digest lists them). Both are planned inside the inbound event's transaction, the
alert keyed by the customer's message id, so a replayed message finds all of it or none of it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.kinds import Kind
from bot.domain.limits import MAX_QUOTE_CHARS, clip
from bot.domain.stages import Pipeline
from bot.services.alerts import heading
from bot.services.koc import KocService
from bot.services.objections import ObjectionService
from bot.services.planning import message_key, outbox_row
from bot.transport.base import TextMessage
from storage.models import Customer
from storage.repositories import Outbox

SIGNAL = Kind.SIGNAL
REFERRAL = "referral"
# an alert waits this long in the outbox when the account is offline
ALERT_VALID = timedelta(days=1)


class Referrals:
    def __init__(self, clock: Clock, config: Config, objections: ObjectionService, koc: KocService) -> None:
        self.clock = clock
        self.config = config
        self.objections = objections
        self.koc = koc
        self.pipeline = Pipeline(config.stages)

    async def record(self, session: AsyncSession, customer: Customer, message: TextMessage) -> int | None:
        """Part of the inbound event's transaction: record the referral and plan the rep's alert.
        Returns the alert's outbox id (None: reported already)."""
        assert customer.id is not None
        now = self.clock.now()
        account_id = customer.account_id
        offered = await self.objections.offer_signal_reply(session, customer, message, REFERRAL, REFERRAL, {})
        promote = await self.koc.promote_hint(session, customer)
        text = self._alert_text(customer, message.text, offered.text, offered.number, promote)
        return await Outbox(session).plan_returning_id(
            outbox_row(
                account_id=account_id,
                customer_id=None,  # a console message goes out even about a deleted customer
                kind=SIGNAL,
                key=message_key(account_id, SIGNAL, REFERRAL, message.message_id),
                due=now,
                not_after=now + ALERT_VALID,
                now=now,
                context={"signal": REFERRAL, "text": text, "about": customer.id},
            )
        )

    def _alert_text(self, customer: Customer, said: str, reply: str | None, number: int, promote: str) -> str:
        lines = [
            f"{heading(customer, self.pipeline.label(customer.stage))}在给你介绍新客户（转介绍）：",
            f"“{clip(said, MAX_QUOTE_CHARS)}”",
        ]
        if reply is not None:
            lines.append(f"下一步：先谢谢TA，发 /send {number} 发出这句，再请TA把朋友推给你：")
            lines.append(f"{number}. {reply}")
        else:
            lines.append("下一步：先谢谢TA，再请TA把朋友推给你。")
        lines.append(f"已记下这次转介绍。{promote}" if promote else "已记下这次转介绍。")
        return "\n".join(lines)
