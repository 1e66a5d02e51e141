"""Reps correct the reader, and each business's model learns from it.

``/wrong [label|none]`` says the reading the bot last acted on for a customer (an objection
suggestion, an opt-out, a soft opt-out) was wrong; ``/wrong 别催了`` names the reading to correct
when a message carried several. ``/label <label>`` marks the customer's last message with an
objection or signal the bot missed. Each correction is an event that keeps the message's text, what
was read and what is right, and builds on an earlier correction of the same message:
``salesbot objections train --with-feedback`` trains on them (the latest correction of a text wins)
and the digest counts them per rep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.domain.display import objection_name
from bot.errors import CommandError
from bot.objections.classifier import Classifier
from bot.objections.corpus import Message
from bot.objections.labels import OBJECTIONS, SIGNAL_NAMES, SIGNALS
from storage.db import Database
from storage.models import Customer, Event
from storage.queries import feedback as queries
from storage.repositories import Events

CORRECTION = queries.CORRECTION
# events that record a reading the bot acted on: what /wrong corrects
READING_KINDS = ("objection", "opt_out", "signal")
NONE_WORDS = ("none", "无", "无顾虑", "没有", "不是", "都不是", "正常")


@dataclass(frozen=True)
class Choice:
    kind: str  # "objection", "signal" or "none"
    key: str | None


@dataclass(frozen=True)
class Reading:
    objection: str | None
    signals: tuple[str, ...]


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
    objections = "、".join(objection_names.get(label) or objection_name(label) for label in OBJECTIONS)
    signals = "、".join(SIGNAL_NAMES[s] for s in SIGNALS)
    raise CommandError(f"不认识“{word}”。顾虑：{objections}；信号：{signals}；都不是：无")


def _signal_of(event: Event) -> str | None:
    return "opt_out" if event.kind == "opt_out" else event.data.get("signal")


class PushControl(Protocol):
    async def resume_pushes(self, customer_id: int, actor: str) -> bool:
        """Undo a soft opt-out; False when all automation stays paused."""
        ...

    async def release_countdown(self, customer_id: int, actor: str) -> int:
        """Let a countdown held for a hot lead go on; returns the steps released."""
        ...


class FeedbackService:
    def __init__(self, db: Database, clock: Clock, classifier: Classifier, *, pushes: PushControl) -> None:
        self.db = db
        self.clock = clock
        self.classifier = classifier
        self.pushes = pushes
        self.names = {label: o.name for label, o in classifier.library.objections.items()}

    def name(self, key: str | None) -> str:
        if key is None:
            return "无顾虑"
        return self.names.get(key) or objection_name(key)

    async def wrong(self, customer: Customer, word: str, actor: str) -> str:
        """The last reading acted on was wrong. ``word``: the right objection, none, or the signal
        whose reading was wrong (别催了, 退订)."""
        assert customer.id is not None
        choice = parse_choice(word, self.names) if word else Choice("none", None)
        async with self.db.transaction() as session:
            events = await queries.latest_of_kinds(session, customer.id, READING_KINDS, 50)
            if choice.kind == "signal":
                event = next((e for e in events if _signal_of(e) == choice.key), None)
                if event is None:
                    name = self.name(choice.key)
                    raise CommandError(f"这位客户最近没有被识别为“{name}”；漏掉的信号请用 /label {name}")
            else:
                event = events[0] if events else None
                if event is None:
                    raise CommandError("这位客户还没有可纠正的识别结果（要补标漏掉的，请用 /label）")
            was = await self._current(session, customer.id, event.text, self._as_read(event))
            wrong_signal = choice.key if choice.kind == "signal" else _signal_of(event)
            if choice.kind == "objection":
                right = Reading(choice.key, was.signals)
            elif event.kind == "objection" and choice.kind != "signal":
                right = Reading(None, was.signals)
            else:
                right = Reading(was.objection, tuple(s for s in was.signals if s != wrong_signal))
            await self._record(session, customer, event.text, "wrong", actor, was, right)
            withdrawn = (
                wrong_signal == "referral"
                and "referral" not in right.signals
                and await self._withdraw_referral(session, customer.id, event.text)
            )
        text = _short(event.text)
        if withdrawn:
            return f"已记录：“{text}”不是“转介绍”，这次不再计入转介绍和KOC候选"
        if wrong_signal == "opt_out_soft" and "opt_out_soft" not in right.signals:
            if await self.pushes.resume_pushes(customer.id, actor):
                return f"已记录：“{text}”不是“别催了”，已恢复对TA的倒计时和跟进提醒"
            return f"已记录：“{text}”不是“别催了”。TA的自动消息仍整体暂停，需要恢复请发 /resume"
        if wrong_signal == "buying_signal" and "buying_signal" not in right.signals:
            released = await self.pushes.release_countdown(customer.id, actor)
            if released:
                return f"已记录：“{text}”不是“购买信号”，TA的倒计时继续（{released} 条）"
            return f"已记录：“{text}”不是“购买信号”"
        if wrong_signal == "opt_out" and "opt_out" not in right.signals:
            return f"已记录：“{text}”不是“退订”。自动消息仍暂停，确认要恢复请发 /resume"
        return f"已记录：“{text}”应为“{self.name(right.objection)}”（原判“{self.name(was.objection)}”）"

    @staticmethod
    async def _withdraw_referral(session: AsyncSession, customer_id: int, text: str) -> bool:
        """A misread referral no longer counts (KOC rules, digest): its event is renamed, kept."""
        referral = await Events(session).latest(customer_id, "referral")
        if referral is None or referral.text != text:
            return False
        referral.kind = "referral_withdrawn"
        return True

    async def label(self, customer: Customer, word: str, actor: str) -> str:
        """Mark the customer's last message with an objection or signal the bot missed."""
        assert customer.id is not None
        choice = parse_choice(word, self.names)
        async with self.db.transaction() as session:
            event = await queries.last_message_in(session, customer.id)
            if event is None:
                raise CommandError("这位客户还没有发过消息")
            read = self.classifier.classify(event.text)
            was = await self._current(session, customer.id, event.text, Reading(read.label, read.signals))
            if choice.kind == "signal" and choice.key is not None:
                other = {"opt_out": "opt_out_soft", "opt_out_soft": "opt_out"}.get(choice.key)
                signals = tuple(s for s in was.signals if s not in (choice.key, other))
                right = Reading(was.objection, (*signals, choice.key))
            else:
                right = Reading(choice.key, was.signals)
            await self._record(session, customer, event.text, "label", actor, was, right)
            # a referral the bot missed still counts (KOC rules, digest), without an alert
            referred = choice.key == "referral" and "referral" not in was.signals
            if referred:
                await Events(session).record(
                    customer.account_id,
                    "referral",
                    self.clock.now(),
                    customer_id=customer.id,
                    text=event.text,
                    data={"label": "referral", "scripts": [], "source": "label"},
                )
        hint = "；需要暂停自动消息请发 /pause" if choice.key == "opt_out" else ""
        hint = "，已记为一次转介绍" if referred else hint
        return f"已记录：“{_short(event.text)}”标为“{self.name(choice.key)}”，下次训练模型时会用上{hint}"

    def _as_read(self, event: Event) -> Reading:
        """What the bot read when it acted (kept with the event), not what today's model says."""
        if "signals" in event.data:
            return Reading(event.data.get("label"), tuple(str(s) for s in event.data["signals"]))
        read = self.classifier.classify(event.text)  # an event from before readings were kept
        return Reading(event.data.get("label", read.label), read.signals)

    @staticmethod
    async def _current(session: AsyncSession, customer_id: int, text: str, read: Reading) -> Reading:
        """The message's reading as corrected so far: the latest correction of it, else ``read``."""
        earlier = await queries.latest_correction(session, customer_id, text)
        if earlier is None:
            return read
        return Reading(earlier.data.get("objection"), tuple(earlier.data.get("signals", ())))

    async def _record(
        self,
        session: AsyncSession,
        customer: Customer,
        text: str,
        via: str,
        actor: str,
        was: Reading,
        right: Reading,
    ) -> None:
        await Events(session).record(
            customer.account_id,
            CORRECTION,
            self.clock.now(),
            customer_id=customer.id,
            text=text,
            data={
                "via": via,
                "actor": actor,
                "was": {"objection": was.objection, "signals": list(was.signals)},
                "objection": right.objection,
                "signals": list(right.signals),
            },
        )


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def load_corrections(db: Database) -> list[Message]:
    """Every corrected message as a labelled message (the latest correction of a text wins)."""
    async with db.transaction() as session:
        events = await queries.all_corrections(session)
    latest: dict[str, Message] = {}
    for event in events:
        objection = event.data.get("objection")
        signals = tuple(s for s in event.data.get("signals", []) if s in SIGNALS)
        if objection is not None and objection not in OBJECTIONS:
            continue
        latest[event.text] = Message(event.text, objection, signals, f"feedback:{event.account_id}")
    return list(latest.values())
