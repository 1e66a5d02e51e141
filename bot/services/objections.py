"""Objection handling: classify customer messages, suggest stage-fit scripts, send the chosen one.

A suggestion goes to the rep's console only (``suggestion``); ``/send N`` plans script N as a
``reply`` in the durable outbox after a human-like pause, rendered when it is sent. Every sent
script is logged, and a customer who moves up a stage within the success window counts as a
success for it; suggestions rank scripts by stage fit first, then by success rate once there is
enough data.
"""

from __future__ import annotations

import functools
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.hours import WorkingCalendar
from bot.domain.kinds import Kind
from bot.domain.stages import Pipeline
from bot.errors import CommandError
from bot.hooks import Hooks, Planned
from bot.objections.classifier import Classification, Classifier
from bot.objections.library import ObjectionLibrary, Script
from bot.services.alerts import ConsoleMessages
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.services.welcome import customer_variables, rep_variables
from bot.templates import OBJECTION, TemplateLibrary
from bot.transport.base import TextMessage
from storage.db import Database
from storage.models import Customer, Event, ScheduledMessage
from storage.repositories import Events, Outbox

log = logging.getLogger(__name__)

REPLY = Kind.REPLY


@dataclass(frozen=True)
class Suggestion:
    event_id: int
    label: str
    script_ids: tuple[str, ...]


@dataclass(frozen=True)
class ScriptStats:
    sent: int
    succeeded: int

    @property
    def rate(self) -> float:
        return self.succeeded / self.sent if self.sent else 0.0


def validate_library(library: ObjectionLibrary, templates: TemplateLibrary) -> None:
    scripts = [s for o in library.objections.values() for s in o.scripts]
    for script in [*scripts, *(s for group in library.signal_scripts.values() for s in group)]:
        templates.check_source(script.text, OBJECTION, f"{script.path}:{script.line}: script '{script.id}'")


# script statistics read at most this many of the newest sends: ranking stays cheap as history grows
STATS_SENDS = 5000


class ObjectionService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        classifier: Classifier,
        templates: TemplateLibrary,
        rng: random.Random,
        *,
        hooks: Hooks,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.library = classifier.library
        self.classifier = classifier
        self.templates = templates
        self.rng = rng
        self.pipeline = Pipeline(config.stages)
        self.hooks = hooks

    # -- inbound ----------------------------------------------------------------------------------

    def read(self, text: str) -> Classification:
        """Read a customer's message (pure CPU: done before the inbound event's transaction opens)."""
        return self.classifier.classify(text)

    async def record_reading(
        self,
        session: AsyncSession,
        customer: Customer,
        message: TextMessage,
        result: Classification,
        console: ConsoleMessages,
    ) -> int | None:
        """Log what the message was read as and, for an objection, plan the rep's suggestion.
        Part of the inbound event's transaction. Returns the planned suggestion's outbox id."""
        assert customer.id is not None
        account_id = customer.account_id
        now = self.clock.now()
        reading = {
            "label": result.label,
            "confidence": result.confidence,
            "signals": list(result.signals),
            "reason": result.reason,
        }
        events = Events(session)
        if result.opt_out:  # no suggestion: the customer wants no more messages
            await events.record(
                account_id, "opt_out", now, customer_id=customer.id, text=message.text, data=reading
            )
            return None
        for signal in ("opt_out_soft", "buying_signal"):  # signals acted on: /wrong corrects them
            if signal in result.signals:
                await events.record(
                    account_id,
                    "signal",
                    now,
                    customer_id=customer.id,
                    text=message.text,
                    data={"signal": signal, **reading},
                )
        if result.label is None or not self.config.objections.enabled:
            return None
        scripts = await self.rank(session, result.label, customer.stage)
        # the scripts are kept with the event, so /send picks from what the rep saw, even after a restart
        await events.add(
            Event(
                account_id=account_id,
                customer_id=customer.id,
                kind="objection",
                text=message.text,
                data={**reading, "scripts": [s.id for s in scripts]},
                at=now,
            )
        )
        text = self._suggestion_text(account_id, customer, message.text, result.label, scripts)
        return await console.suggestion(session, account_id, text, message.message_id, customer.id)

    async def last_suggestion(self, customer_id: int) -> Suggestion | None:
        """The customer's latest suggestion, from the event log."""
        async with self.db.transaction() as session:
            # an objection's scripts, or the reply a hot-lead alert offered: whichever is newer
            found = [await Events(session).latest(customer_id, kind) for kind in ("objection", "hot_lead")]
        offered = [e for e in found if e is not None and e.data.get("scripts")]
        event = max(offered, key=lambda e: e.id or 0, default=None)
        if event is None or event.id is None:
            return None
        return Suggestion(event.id, str(event.data["label"]), tuple(str(i) for i in event.data["scripts"]))

    # -- /send ------------------------------------------------------------------------------------

    async def plan_reply(
        self, account_id: str, customer: Customer, number: int, extra: str, actor: str
    ) -> datetime:
        """Plan script ``number`` of the customer's last suggestion; returns when it will go out."""
        assert customer.id is not None
        suggestion = await self.last_suggestion(customer.id)
        if suggestion is None:
            raise CommandError("这位客户目前没有待选的话术建议")
        if not 1 <= number <= len(suggestion.script_ids):
            raise CommandError(f"请输入 1 到 {len(suggestion.script_ids)} 之间的编号")
        if customer.deleted_at is not None:
            raise CommandError("客户已删除好友，无法发送")
        script_id = suggestion.script_ids[number - 1]
        now = self.clock.now()
        due = now + timedelta(seconds=round(self.rng.uniform(*self.config.objections.reply_delay_seconds)))
        async with self.db.transaction() as session:
            planned = await Outbox(session).plan(
                outbox_row(
                    account_id=account_id,
                    customer_id=customer.id,
                    kind=REPLY,
                    key=message_key(account_id, REPLY, suggestion.event_id, number, customer_id=customer.id),
                    sequence=f"objection:{suggestion.label}",
                    step=script_id,
                    template=script_id,
                    context={
                        "script_id": script_id,
                        "extra": extra,
                        "label": suggestion.label,
                        "actor": actor,
                        "stage": customer.stage,
                    },
                    due=due,
                    not_after=due + timedelta(hours=1),
                    now=now,
                )
            )
        if not planned:
            raise CommandError(f"话术 {number} 已经发送过了")
        await self.db.after_commit(functools.partial(self.hooks.emit, Planned(due)))
        return due

    async def record_sent(self, row: ScheduledMessage) -> None:
        async with self.db.transaction() as session:
            await Events(session).record(
                row.account_id,
                "script_sent",
                self.clock.now(),
                customer_id=row.customer_id,
                data={
                    "script_id": row.context.get("script_id"),
                    "label": row.context.get("label"),
                    "stage": row.context.get("stage"),
                },
            )

    # -- ranking ----------------------------------------------------------------------------------

    async def rank(self, session: AsyncSession, label: str, stage: str) -> list[Script]:
        for_stage, general = self.library.scripts_for(label, stage)
        stats = await self.script_stats(session)
        minimum = self.config.objections.min_sends_for_ranking

        def ordered(scripts: list[Script]) -> list[Script]:
            def key(script: Script) -> tuple[int, float]:
                s = stats.get(script.id)
                enough = s is not None and s.sent >= minimum
                return (0 if enough else 1, -(s.rate if s and enough else 0.0))

            return sorted(scripts, key=key)  # stable: file order among equals

        return (ordered(for_stage) + ordered(general))[: self.config.objections.suggestions]

    async def script_stats(self, session: AsyncSession) -> dict[str, ScriptStats]:
        """Sends and successes per script over the newest :data:`STATS_SENDS` sends (a bounded
        read): a success is a move to a later stage within the window after the send."""
        window = timedelta(days=self.config.objections.success_window_days)
        events = Events(session)
        sends = await events.recent("script_sent", STATS_SENDS)
        if not sends:
            return {}
        customer_ids = {e.customer_id for e in sends if e.customer_id is not None}
        moves: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        for move in await events.of_customers("stage_changed", customer_ids, min(e.at for e in sends)):
            if move.customer_id is not None:
                moves[move.customer_id].append((move.at, str(move.data.get("to", ""))))
        sent: dict[str, int] = defaultdict(int)
        succeeded: dict[str, int] = defaultdict(int)
        for event in sends:
            script_id = str(event.data.get("script_id"))
            stage_then = str(event.data.get("stage", ""))
            sent[script_id] += 1
            if event.customer_id is not None and any(
                event.at < at <= event.at + window and self.pipeline.is_before(stage_then, to)
                for at, to in moves.get(event.customer_id, [])
            ):
                succeeded[script_id] += 1
        return {sid: ScriptStats(sent[sid], succeeded[sid]) for sid in sent}

    # -- rendering --------------------------------------------------------------------------------

    def render_script(self, script: Script, account_id: str, customer: Customer) -> str:
        account = self.config.account(account_id)
        calendar = WorkingCalendar(account.profile.working_hours, self.config.tz)
        context: dict[str, Any] = {
            "rep": rep_variables(account, calendar),
            "customer": customer_variables(customer),
            "stage": self.pipeline.label(customer.stage),
        }
        return self.templates.render_source(
            script.text, context, f"{script.path}:{script.line}: script '{script.id}'"
        )

    def _suggestion_text(
        self, account_id: str, customer: Customer, said: str, label: str, scripts: list[Script]
    ) -> str:
        name = customer.remark or customer.display_name or customer.wechat_id
        stage, objection = self.pipeline.label(customer.stage), self.library.name(label)
        lines = [
            f"【{name} #{customer.id} · {stage}】提出「{objection}」顾虑：",
            f"“{said}”",
            "建议回复（发送 /send 编号，可在编号后追加文字）：",
        ]
        for number, script in enumerate(scripts, start=1):
            lines.append(f"{number}. {self.render_script(script, account_id, customer)}")
        return "\n".join(lines)


class ReplyComposer:
    """Renders a /send script when it goes out (so a fixed template applies to what is pending)."""

    def __init__(self, service: ObjectionService) -> None:
        self.service = service

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "customer rows always carry their customer"
        script = self.service.library.script(str(row.context.get("script_id")))
        if script is None:
            return None
        text = self.service.render_script(script, row.account_id, customer)
        extra = str(row.context.get("extra", "")).strip()
        return Composed(customer.wechat_id, f"{text}\n{extra}" if extra else text)
