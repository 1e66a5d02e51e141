"""Reps correct the reader, and each business's model learns from it.

``/wrong [label|none]`` says the reading the bot last acted on for a customer (an objection
suggestion, an opt-out, a soft opt-out) was wrong; ``/label <label>`` marks the customer's last
message with an objection or signal the bot missed. Each correction is an event that keeps the
message's text, what was read and what is right: ``salesbot objections train --with-feedback``
trains on them (the latest correction of a message wins) and the digest counts them per rep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from bot.clock import Clock
from bot.errors import CommandError
from bot.objections.classifier import Classifier
from bot.objections.corpus import Message
from bot.objections.labels import OBJECTIONS, SIGNAL_NAMES, SIGNALS
from storage.db import Database
from storage.models import Customer, Event
from storage.repositories import Events

CORRECTION = "correction"
# events that record a reading the bot acted on: what /wrong corrects
READING_KINDS = ("objection", "opt_out", "signal")
NONE_WORDS = ("none", "无", "没有", "不是", "都不是", "正常")


@dataclass(frozen=True)
class Choice:
    kind: str  # "objection", "signal" or "none"
    key: str | None


def parse_choice(word: str, objection_names: dict[str, str]) -> Choice:
    """An objection or signal by English key or Chinese name (价格, 转介绍), or none."""
    folded = word.strip().casefold()
    if folded in NONE_WORDS:
        return Choice("none", None)
    for label in OBJECTIONS:
        if folded in (label, objection_names.get(label, "")):
            return Choice("objection", label)
    for signal in SIGNALS:
        if folded in (signal, SIGNAL_NAMES[signal]):
            return Choice("signal", signal)
    objections = "、".join(objection_names.get(label, label) for label in OBJECTIONS)
    signals = "、".join(SIGNAL_NAMES[s] for s in SIGNALS)
    raise CommandError(f"不认识“{word}”。顾虑：{objections}；信号：{signals}；都不是：none")


class FeedbackService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        classifier: Classifier,
        *,
        resume_pushes: Callable[[int, str], Any],
    ) -> None:
        self.db = db
        self.clock = clock
        self.classifier = classifier
        self.resume_pushes = resume_pushes
        self.names = {label: o.name for label, o in classifier.library.objections.items()}

    def name(self, key: str | None) -> str:
        if key is None:
            return "无顾虑"
        return self.names.get(key) or SIGNAL_NAMES.get(key, key)

    async def wrong(self, customer: Customer, word: str, actor: str) -> str:
        """The last reading acted on was wrong; ``word`` (optional) names what is right."""
        assert customer.id is not None
        choice = parse_choice(word, self.names) if word else Choice("none", None)
        if choice.kind == "signal":
            raise CommandError("/wrong 后面写正确的顾虑或 none；漏掉的信号请用 /label，如 /label 转介绍")
        async with self.db.transaction() as session:
            event = (
                await session.exec(
                    select(Event)
                    .where(Event.customer_id == customer.id, col(Event.kind).in_(READING_KINDS))
                    .order_by(col(Event.id).desc())
                    .limit(1)
                )
            ).first()
            if event is None:
                raise CommandError("这位客户还没有可纠正的识别结果（要补标漏掉的，请用 /label）")
            was = self.classifier.classify(event.text)
            was_objection = event.data.get("label") if event.kind == "objection" else was.label
            was_signal = "opt_out" if event.kind == "opt_out" else event.data.get("signal")
            signals = tuple(s for s in was.signals if s != was_signal)
            objection = (
                choice.key if (choice.kind == "objection" or event.kind == "objection") else was_objection
            )
            await self._record(customer, event.text, event.id, "wrong", actor, was, objection, signals)
        if was_signal == "opt_out_soft":
            await self.resume_pushes(customer.id, actor)
            return (
                f"已记录：“{_short(event.text)}”不是“{self.name(was_signal)}”，已恢复对TA的倒计时和跟进提醒"
            )
        if was_signal == "opt_out":
            return f"已记录：“{_short(event.text)}”不是“退订”。自动消息仍暂停，确认要恢复请发 /resume"
        return (
            f"已记录：“{_short(event.text)}”应为“{self.name(objection)}”（原判“{self.name(was_objection)}”）"
        )

    async def label(self, customer: Customer, word: str, actor: str) -> str:
        """Mark the customer's last message with an objection or signal the bot missed."""
        assert customer.id is not None
        choice = parse_choice(word, self.names)
        async with self.db.transaction() as session:
            event = (
                await session.exec(
                    select(Event)
                    .where(Event.customer_id == customer.id, Event.kind == "message_in")
                    .order_by(col(Event.id).desc())
                    .limit(1)
                )
            ).first()
            if event is None:
                raise CommandError("这位客户还没有发过消息")
            was = self.classifier.classify(event.text)
            objection, signals = was.label, was.signals
            earlier = await self._latest_correction(session, customer.id, event.id)
            if earlier is not None:  # a second /label on the same message adds to the first
                objection, signals = earlier.data.get("objection"), tuple(earlier.data.get("signals", []))
            if choice.kind == "signal" and choice.key is not None:
                signals = (*signals, choice.key) if choice.key not in signals else signals
                if choice.key in ("opt_out", "opt_out_soft"):  # one or the other
                    other = "opt_out_soft" if choice.key == "opt_out" else "opt_out"
                    signals = tuple(s for s in signals if s != other)
            else:
                objection = choice.key
            await self._record(customer, event.text, event.id, "label", actor, was, objection, signals)
        return f"已记录：“{_short(event.text)}”标为“{self.name(choice.key)}”，下次训练模型时会用上"

    @staticmethod
    async def _latest_correction(session: Any, customer_id: int, event_id: int | None) -> Event | None:
        corrections = (
            await session.exec(
                select(Event)
                .where(Event.customer_id == customer_id, Event.kind == CORRECTION)
                .order_by(col(Event.id).desc())
            )
        ).all()
        return next((c for c in corrections if c.data.get("of_event") == event_id), None)

    async def _record(
        self,
        customer: Customer,
        text: str,
        event_id: int | None,
        via: str,
        actor: str,
        was: Any,
        objection: str | None,
        signals: tuple[str, ...],
    ) -> None:
        async with self.db.transaction() as session:
            await Events(session).record(
                customer.account_id,
                CORRECTION,
                self.clock.now(),
                customer_id=customer.id,
                text=text,
                data={
                    "via": via,
                    "actor": actor,
                    "of_event": event_id,
                    "was": {"objection": was.label, "signals": list(was.signals)},
                    "objection": objection,
                    "signals": list(signals),
                },
            )


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def load_corrections(db: Database) -> list[Message]:
    """Every corrected message as a labelled message (the latest correction of a text wins)."""
    async with db.transaction() as session:
        events = (
            await session.exec(select(Event).where(Event.kind == CORRECTION).order_by(col(Event.id)))
        ).all()
    latest: dict[str, Message] = {}
    for event in events:
        objection = event.data.get("objection")
        signals = tuple(s for s in event.data.get("signals", []) if s in SIGNALS)
        if objection is not None and objection not in OBJECTIONS:
            continue
        latest[event.text] = Message(event.text, objection, signals, f"feedback:{event.account_id}")
    return list(latest.values())
