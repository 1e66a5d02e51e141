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
from bot.domain.limits import MAX_EXTRA_CHARS, MAX_NAME_CHARS, MAX_QUOTE_CHARS, clip
from bot.domain.stages import Pipeline
from bot.errors import CommandError
from bot.hooks import Hooks, Planned
from bot.objections.classifier import Classification, Classifier
from bot.objections.library import ObjectionLibrary, Script
from bot.playbook.library import PlaybookLibrary, PlaybookScript
from bot.services.alerts import ConsoleMessages, heading
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.services.welcome import customer_variables, rep_variables
from bot.templates import OBJECTION, TemplateLibrary
from bot.transport.base import TextMessage
from storage.db import Database
from storage.models import Customer, Event, ScheduledMessage
from storage.repositories import Accounts, Customers, Events, EventStamps, Offered, Outbox

log = logging.getLogger(__name__)

REPLY = Kind.REPLY


@dataclass(frozen=True)
class OfferedReply:
    """The reply a signal's alert offers: its /send number and text (None: nothing to offer)."""

    number: int
    text: str | None


@dataclass(frozen=True)
class Suggestion:
    event_id: int
    customer_id: int
    label: str
    script_ids: tuple[str, ...]
    first: int  # the number the console shows for its first script (the others follow on)
    source: str = "objection"  # the event that offered it (a coaching card: "coach", "reactivate")

    @property
    def last(self) -> int:
        return self.first + len(self.script_ids) - 1

    @property
    def family(self) -> str:
        """Which library its scripts come from (a reply row's ``sequence`` names it)."""
        return "playbook" if self.source in PLAYBOOK_SOURCES else "objection"

    def numbers(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}–{self.last}"

    @staticmethod
    def of(event: Event | Offered) -> Suggestion | None:
        """The suggestion an ``objection``, ``hot_lead``, ``referral``, ``coach`` or ``reactivate``
        event offered (None: none)."""
        if event.id is None or event.customer_id is None or not event.data.get("scripts"):
            return None
        scripts = tuple(str(i) for i in event.data["scripts"])
        # suggestions from before numbering started each showed 1, 2, 3
        first = int(event.data.get("first", 1))
        return Suggestion(event.id, event.customer_id, str(event.data["label"]), scripts, first, event.kind)


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
# ranking an objection's scripts reuses the statistics this long, unless this process has written
# a send, a stage change or an order since: other processes' writes show within this bound, and a
# ranking over thousands of sends does not move with one more
STATS_REUSE = timedelta(seconds=60)
STATS_KINDS = ("script_sent", "stage_changed", "order")
# /send N answers a suggestion this long after it was made; numbers start again from 1 once an
# account has had no suggestion for this long, so two open suggestions never share a number
SUGGESTION_OPEN = timedelta(days=1)
# how many of the account's open suggestions /send N looks through for number N
OPEN_SUGGESTIONS = 500
# numbering a new suggestion reads this many newest events first (the rest only if none offers scripts)
FIRST_PAGE = 8
# the events that offer numbered scripts to /send: objection suggestions, hot-lead and referral
# alerts, coaching cards (bot/services/coach.py), reactivation cards (bot/services/lifecycle.py)
SUGGESTING = ("objection", "hot_lead", "referral", "coach", "reactivate")
# the events whose scripts come from the playbook
PLAYBOOK_SOURCES = ("coach", "reactivate")


def check_extra(extra: str) -> None:
    """Text a rep appends to a script is bounded: a pasted page is refused, not sent."""
    if len(extra) > MAX_EXTRA_CHARS:
        raise CommandError(f"追加的文字太长（{len(extra)} 个字），最多 {MAX_EXTRA_CHARS} 个字")


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
        playbook: PlaybookLibrary | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.library = classifier.library
        self.playbook = playbook or PlaybookLibrary(())
        self.classifier = classifier
        self.templates = templates
        self.rng = rng
        self.pipeline = Pipeline(config.stages)
        self.hooks = hooks
        # the statistics ranking last read: (this process's event stamps then, when, what)
        self._ranking_stats: tuple[tuple[int, ...], datetime, dict[str, ScriptStats]] | None = None

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
        for signal in ("opt_out_soft", "buying_signal", "referral"):  # acted on: /wrong corrects them
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
        first = await self.next_number(session, account_id) if scripts else 1
        # the scripts and their numbers are kept with the event, so /send N picks from what the rep
        # saw, even after a restart
        await events.add(
            Event(
                account_id=account_id,
                customer_id=customer.id,
                kind="objection",
                text=message.text,
                data={**reading, "scripts": [s.id for s in scripts], "first": first},
                at=now,
            )
        )
        text = self._suggestion_text(account_id, customer, message.text, result.label, scripts, first)
        return await console.suggestion(session, account_id, text, message.message_id, customer.id)

    async def offer_signal_reply(
        self,
        session: AsyncSession,
        customer: Customer,
        message: TextMessage,
        signal: str,
        kind: str,
        data: dict[str, Any],
        *,
        offer: bool = True,
    ) -> OfferedReply:
        """Record a signal (event ``kind`` with ``data``) with the library's reply for the customer's
        stage, numbered like a suggestion so /send N finds it; ``offer`` False: record, offer none."""
        assert customer.id is not None
        stages = self.pipeline.script_stages(customer.stage)
        script = self.library.signal_script(signal, *stages) if offer else None
        first = await self.next_number(session, customer.account_id) if script else 1
        await Events(session).record(
            customer.account_id,
            kind,
            self.clock.now(),
            customer_id=customer.id,
            text=message.text,
            data={
                "label": signal,
                "scripts": [script.id] if script else [],
                "first": first,
                "message_id": message.message_id,
                **data,
            },
        )
        reply = self.render_script(script, customer.account_id, customer) if script else None
        return OfferedReply(first, reply)

    async def next_number(self, session: AsyncSession, account_id: str) -> int:
        """The number of a new suggestion's first script: after the account's open suggestions
        (suggestions of concurrent messages take turns on the account's row), else 1."""
        await Accounts(session).lock(account_id)
        since = self.clock.now() - SUGGESTION_OPEN
        # the newest suggestion is nearly always among the newest few events: read those first,
        # not a busy day's OPEN_SUGGESTIONS events for every message
        for skip, limit in ((0, FIRST_PAGE), (FIRST_PAGE, OPEN_SUGGESTIONS - FIRST_PAGE)):
            for event in await Events(session).offered(account_id, SUGGESTING, since, limit, skip=skip):
                suggestion = Suggestion.of(event)
                if suggestion is not None:
                    return suggestion.last + 1
        return 1

    async def last_suggestion(self, customer_id: int) -> Suggestion | None:
        """The customer's latest suggestion, from the event log."""
        async with self.db.transaction() as session:
            # an objection's scripts, or the reply a hot-lead alert offered: whichever is newer
            found = [await Events(session).latest(customer_id, kind) for kind in SUGGESTING]
        offered = [s for s in map(Suggestion.of, filter(None, found)) if s is not None]
        return max(offered, key=lambda s: s.event_id, default=None)

    async def numbered(self, account_id: str, number: int) -> Suggestion | None:
        """The account's open suggestion that shows script ``number`` (the newest, should an old
        one from before numbering share it)."""
        async with self.db.transaction() as session:
            events = await Events(session).offered(
                account_id, SUGGESTING, self.clock.now() - SUGGESTION_OPEN, OPEN_SUGGESTIONS
            )
        for event in events:
            suggestion = Suggestion.of(event)
            if suggestion is not None and suggestion.first <= number <= suggestion.last:
                return suggestion
        return None

    async def customer_of(self, account_id: str, number: int) -> int:
        """The customer whose suggestion shows script ``number``: /send N without a name."""
        suggestion = await self.numbered(account_id, number)
        if suggestion is None:
            raise CommandError(
                f"没有编号为 {number} 的待选话术（建议发出 24 小时后失效）。请按控制台里建议的编号发送"
            )
        return suggestion.customer_id

    # -- /send ------------------------------------------------------------------------------------

    async def plan_reply(
        self, account_id: str, customer: Customer, number: int, extra: str, actor: str
    ) -> datetime:
        """Plan script ``number`` (as the console numbered it) of the customer's suggestion;
        returns when it will go out. A number from another customer's suggestion is refused."""
        assert customer.id is not None
        check_extra(extra)
        suggestion = await self.numbered(account_id, number)
        if suggestion is None or suggestion.customer_id != customer.id:
            raise CommandError(await self._not_this_customers(account_id, customer.id, number, suggestion))
        position = number - suggestion.first + 1
        due = await self.plan_script(
            customer,
            suggestion.script_ids[position - 1],
            offer=suggestion.event_id,
            position=position,
            family=suggestion.family,
            label=suggestion.label,
            extra=extra,
            actor=actor,
        )
        if due is None:
            raise CommandError(f"话术 {number} 已经发送过了")
        return due

    async def plan_script(
        self,
        customer: Customer,
        script_id: str,
        *,
        offer: int,
        position: int,
        family: str,
        label: str,
        extra: str,
        actor: str,
    ) -> datetime | None:
        """Plan a script the rep chose as a ``reply`` after a human-like pause (rendered when it
        goes out, ``script_sent`` logged then). ``offer`` is the event that numbered it (a
        suggestion, a /scripts listing) and ``position`` its place there: the same choice planned
        twice is one row. ``family`` (playbook, objection) and ``label`` (play, objection) say
        what kind of script it is. Returns when it goes out, or None when it was already planned."""
        assert customer.id is not None
        if customer.deleted_at is not None:
            raise CommandError("客户已删除好友，无法发送")
        account_id = customer.account_id
        now = self.clock.now()
        due = now + timedelta(seconds=round(self.rng.uniform(*self.config.objections.reply_delay_seconds)))
        async with self.db.transaction() as session:
            planned = await Outbox(session).plan(
                outbox_row(
                    account_id=account_id,
                    customer_id=customer.id,
                    kind=REPLY,
                    key=message_key(account_id, REPLY, offer, position, customer_id=customer.id),
                    sequence=f"{family}:{label}",
                    step=script_id,
                    template=script_id,
                    context={
                        "script_id": script_id,
                        "extra": extra,
                        "label": label,
                        "actor": actor,
                        "stage": customer.stage,
                    },
                    due=due,
                    not_after=due + timedelta(hours=1),
                    now=now,
                )
            )
        if not planned:
            return None
        await self.db.after_commit(functools.partial(self.hooks.emit, Planned(due)))
        return due

    async def _not_this_customers(
        self, account_id: str, customer_id: int, number: int, other: Suggestion | None
    ) -> str:
        """Why /send ``number`` does not go to this customer, and the number that would."""
        async with self.db.transaction() as session:
            theirs = await Customers(session).get(other.customer_id) if other is not None else None
            this = await Customers(session).get(customer_id)
        own = await self.last_suggestion(customer_id)
        own_open = own is not None and await self.numbered(account_id, own.first) == own
        hint = f"这位客户的建议编号是 {own.numbers()}" if own is not None and own_open else ""
        if theirs is not None:
            name = clip(theirs.remark or theirs.display_name or theirs.wechat_id, MAX_NAME_CHARS)
            # the reply goes to the console, also for a /send typed in a customer's chat: "这位客户"
            # alone does not say who was meant, so both customers are named
            mine = clip(this.remark or this.display_name or this.wechat_id, MAX_NAME_CHARS) if this else ""
            not_this = f"不是给「{mine} #{this.id}」的。" if this is not None else "不是这位客户的。"
            if this is not None:
                hint = hint.replace("这位客户", f"「{mine}」")
            return (
                f"话术 {number} 是给「{name} #{theirs.id}」的建议，"
                + not_this
                + (f"{hint}。" if hint else "")
                + f"要发给「{name}」，请直接发送 /send {number}"
            )
        if own is None:
            return "这位客户目前没有待选的话术建议"
        if not hint:
            return "这位客户的话术建议已超过 24 小时，已失效"
        return f"没有编号为 {number} 的待选话术，{hint}"

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
        for_stage, general = self.library.scripts_for(label, *self.pipeline.script_stages(stage))
        stats = await self._stats_for_ranking(session)
        minimum = self.config.objections.min_sends_for_ranking

        def ordered(scripts: list[Script]) -> list[Script]:
            def key(script: Script) -> tuple[int, float]:
                s = stats.get(script.id)
                enough = s is not None and s.sent >= minimum
                return (0 if enough else 1, -(s.rate if s and enough else 0.0))

            return sorted(scripts, key=key)  # stable: file order among equals

        return (ordered(for_stage) + ordered(general))[: self.config.objections.suggestions]

    async def _stats_for_ranking(self, session: AsyncSession) -> dict[str, ScriptStats]:
        """:meth:`script_stats` of every account, read again only when this process wrote what they
        count since, or after :data:`STATS_REUSE`: not a read of thousands of sends per message."""
        stamps, now = EventStamps.of(STATS_KINDS), self.clock.now()
        cached = self._ranking_stats
        if cached is not None and cached[0] == stamps and timedelta(0) <= now - cached[1] < STATS_REUSE:
            return cached[2]
        stats = await self.script_stats(session)
        self._ranking_stats = (stamps, now, stats)
        return stats

    async def script_stats(
        self, session: AsyncSession, account_id: str | None = None
    ) -> dict[str, ScriptStats]:
        """Sends and successes per script over the newest :data:`STATS_SENDS` sends (of one account,
        given ``account_id``; a bounded read): a success is a move to a later stage, or an order,
        within the window after the send."""
        window = timedelta(days=self.config.objections.success_window_days)
        events = Events(session)
        sends = await events.recent("script_sent", STATS_SENDS, account_id)
        if not sends:
            return {}
        customer_ids = {e.customer_id for e in sends if e.customer_id is not None}
        since = min(e.at for e in sends)
        # per customer: when it moved up (to which stage) or ordered (None: an order counts whatever
        # the stage; a repeat order at the last stage moves nothing)
        wins: dict[int, list[tuple[datetime, str | None]]] = defaultdict(list)
        for move in await events.of_customers("stage_changed", customer_ids, since):
            if move.customer_id is not None:
                wins[move.customer_id].append((move.at, str(move.data.get("to", ""))))
        for order in await events.of_customers("order", customer_ids, since):
            if order.customer_id is not None:
                wins[order.customer_id].append((order.at, None))
        sent: dict[str, int] = defaultdict(int)
        succeeded: dict[str, int] = defaultdict(int)
        for event in sends:
            script_id = str(event.data.get("script_id"))
            stage_then = str(event.data.get("stage", ""))
            sent[script_id] += 1
            if event.customer_id is not None and any(
                event.at < at <= event.at + window and (to is None or self.pipeline.is_before(stage_then, to))
                for at, to in wins.get(event.customer_id, [])
            ):
                succeeded[script_id] += 1
        return {sid: ScriptStats(sent[sid], succeeded[sid]) for sid in sent}

    # -- rendering --------------------------------------------------------------------------------

    def script(self, script_id: str) -> Script | PlaybookScript | None:
        """A script /send may plan: the objection library's or the playbook's (ids are unique
        across both, ``salesbot check`` insists)."""
        return self.library.script(script_id) or self.playbook.script(script_id)

    def render_script(self, script: Script | PlaybookScript, account_id: str, customer: Customer) -> str:
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
        self, account_id: str, customer: Customer, said: str, label: str, scripts: list[Script], first: int
    ) -> str:
        stage, objection = self.pipeline.label(customer.stage), self.library.name(label)
        lines = [
            f"{heading(customer, stage)}提出「{objection}」顾虑：",
            f"“{clip(said, MAX_QUOTE_CHARS)}”",
            "建议回复（发送 /send 编号，可在编号后追加文字）：",
        ]
        for number, script in enumerate(scripts, start=first):
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
        script = self.service.script(str(row.context.get("script_id")))
        if script is None:
            return None
        text = self.service.render_script(script, row.account_id, customer)
        extra = str(row.context.get("extra", "")).strip()
        return Composed(customer.wechat_id, f"{text}\n{extra}" if extra else text)
