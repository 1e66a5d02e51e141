"""Lifecycle states kept on the customer row, and the reactivation card when one turns dormant.

A daily sweep (at ``[lifecycle] sweep_at``, local time; run before a dispatch like the digest's
planning, so ``salesbot simulate`` and the tests fire it when time is advanced) moves customers
between states by the pure rule of :mod:`bot.domain.lifecycle`; a customer's message moves them
at once (in the inbound transaction). Each change is a ``lifecycle_changed`` event. A customer who
turns dormant gets the rep ONE card (keyed by the day the silence began) with the playbook's
"reactivate" scripts for their stage, numbered like objection suggestions so ``/send N`` sends one
to that customer. Nothing is sent to the customer by itself.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.display import kind_name, lifecycle_name
from bot.domain.kinds import AUTOMATED_KINDS, Kind, Status
from bot.domain.lifecycle import Lifecycle, local_day, newly_dormant, silence_began, silent_days
from bot.domain.schedule import local_at
from bot.domain.stages import Pipeline
from bot.playbook.library import DORMANT_CARD, PlaybookLibrary, PlaybookScript
from bot.services.alerts import ConsoleMessages, heading
from bot.services.lifecycle_state import LifecycleStates
from bot.services.objections import ObjectionService
from bot.services.planning import message_key
from storage.db import Database
from storage.models import Customer, Event
from storage.queries import lifecycle as queries
from storage.repositories import Events, Outbox

log = logging.getLogger(__name__)

REACTIVATION = Kind.REACTIVATION
REACTIVATE = "reactivate"  # the playbook's play, and the event that numbers the card's scripts
# a card's numbers stay valid for /send for a day (objections.SUGGESTION_OPEN): an older card is stale
CARD_VALID = timedelta(hours=12)
CARD_SCRIPTS = 3


class LifecycleService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        console: ConsoleMessages,
        objections: ObjectionService,
        playbook: PlaybookLibrary,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.console = console
        self.objections = objections
        self.playbook = playbook
        self.states = LifecycleStates(config)
        self.pipeline = Pipeline(config.stages)
        self._swept_day: date | None = None  # the local day of this process's last sweep

    # -- the daily sweep --------------------------------------------------------------------------

    def _sweep_time(self) -> datetime:
        """Today's sweep time until one ran today (a start after it sweeps at once), then tomorrow's."""
        now = self.clock.now()
        today = now.astimezone(self.config.tz).date()
        day = today if self._swept_day is None or self._swept_day < today else today + timedelta(days=1)
        return max(now, local_at(day, self.config.lifecycle.sweep_at, self.config.tz))

    async def next_sweep_at(self) -> datetime | None:
        """The next sweep that can change anything (None: no customer to move): what a simulator
        fast-forwarding months stops at, instead of every day. A lower bound from each state's
        oldest activity, so it is never late."""
        due = self._sweep_time()
        async with self.db.transaction() as session:
            groups = await queries.oldest_activity(session)
        earliest = self._earliest_change(groups)
        if earliest is None:
            return None
        tz = self.config.tz
        return max(due, local_at(earliest, self.config.lifecycle.sweep_at, tz))

    def _earliest_change(self, groups: list[queries.OldestActivity]) -> date | None:
        rules, tz = self.states.rules, self.config.tz
        active = min(rules.dormant_days_before_order, rules.dormant_days_after_order)
        days: list[date] = []
        for state, added, last_active, deleted in groups:
            if deleted or added is None or last_active is None:  # a removal the sweep has not seen
                days.append(self.clock.now().astimezone(tz).date())
            elif state == Lifecycle.NEW:
                days.append(local_day(added, tz) + timedelta(days=min(rules.new_days, active)))
            elif state == Lifecycle.DORMANT:
                days.append(local_day(last_active, tz) + timedelta(days=rules.lost_days))
            else:
                days.append(local_day(last_active, tz) + timedelta(days=active))
        return min(days, default=None)

    async def sweep_if_due(self) -> list[int]:
        """Sweep once a day, once its local time has come; returns the card rows planned (to send now)."""
        if self.clock.now() < self._sweep_time():
            return []
        return await self.sweep()

    async def sweep(self) -> list[int]:
        """Move every customer whose state changed; one transaction. Returns the card rows."""
        now = self.clock.now()
        cards: list[int] = []
        async with self.db.transaction() as session:
            for customer in await queries.sweepable(session):
                card = await self.refresh(session, customer, now, reason="sweep")
                if card is not None:
                    cards.append(card)
        self._swept_day = now.astimezone(self.config.tz).date()
        if cards:
            log.info("lifecycle sweep: %d reactivation card(s) planned", len(cards))
        return cards

    # -- one customer -----------------------------------------------------------------------------

    async def refresh(
        self, session: AsyncSession, customer: Customer, now: datetime, *, reason: str
    ) -> int | None:
        """Put the customer in their state as of ``now`` (in the caller's transaction); turning
        dormant plans the rep's card. Returns the card's row id."""
        state = await self.states.update(session, customer, now, reason=reason, dormant=True)
        if state is not Lifecycle.DORMANT or not self._wants_card(customer):
            return None
        activity = self.states.activity(customer)
        if not newly_dormant(now, activity, self.states.rules, self.config.tz):
            return None
        began = silence_began(activity, self.config.tz)
        return await self._card(session, customer, began, silent_days(now, activity, self.config.tz))

    def _wants_card(self, customer: Customer) -> bool:
        """No card for a customer who removed the rep, opted out (automation paused) or asked to be
        pushed less: a reason to come back would be exactly what they asked not to get."""
        return (
            self.config.lifecycle.reactivation_cards
            and customer.deleted_at is None
            and customer.paused_at is None
            and customer.pushes_stopped_at is None
        )

    def scripts_for(self, customer: Customer) -> list[PlaybookScript]:
        """The playbook's reactivate scripts for the customer's stage: the account's vertical first,
        a stage that is several steps (咨询: stranger and potential) read from its latest, as the
        coaching card does; only scripts that fit after a silence (:data:`DORMANT_CARD`)."""
        vertical = self.config.account(customer.account_id).vertical
        found: dict[str, PlaybookScript] = {}
        for step in reversed(self.pipeline.script_stages(customer.stage)):
            for script in self.playbook.scripts(vertical=vertical, play=REACTIVATE, stage=step):
                if script.moment in DORMANT_CARD:
                    found.setdefault(script.id, script)
        ranked = sorted(found.values(), key=lambda s: s.vertical != vertical)  # stable
        return ranked[:CARD_SCRIPTS]

    async def _card(self, session: AsyncSession, customer: Customer, began: date, days: int) -> int | None:
        assert customer.id is not None
        account_id = customer.account_id
        key = message_key(account_id, REACTIVATION, began.isoformat(), customer_id=customer.id)
        scripts = self.scripts_for(customer)
        first = await self.objections.next_number(session, account_id) if scripts else 1
        row = await self.console.card(
            session,
            account_id,
            REACTIVATION,
            key,
            self._card_text(
                customer, began, days, scripts, first, await self._automated_today(session, customer)
            ),
            customer.id,
            valid=CARD_VALID,
        )
        if row is None:
            return None  # this silence's card was planned already
        data: dict[str, Any] = {
            "label": REACTIVATE,
            "scripts": [s.id for s in scripts],
            "first": first,
            "silent_since": began.isoformat(),
        }
        # /send N finds the card's scripts through this event, like an objection suggestion's
        await Events(session).add(
            Event(
                account_id=account_id,
                customer_id=customer.id,
                kind=REACTIVATE,
                data=data,
                at=self.clock.now(),
            )
        )
        return row

    async def _automated_today(self, session: AsyncSession, customer: Customer) -> str:
        """The customer's automated message of today (the T+30 aftercare falls on the day of the
        30-day dormancy by default), worded for the card; "" when there is none."""
        assert customer.id is not None
        tz = self.config.tz
        today = local_day(self.clock.now(), tz)
        start, end = local_at(today, time(0, 0), tz), local_at(today + timedelta(days=1), time(0, 0), tz)
        row = await Outbox(session).automated_between(customer.id, AUTOMATED_KINDS, start, end)
        if row is None:
            return ""
        if row.status == Status.SENT:
            return f"今天已经自动给TA发过{kind_name(row.kind)}，不必急着再发。"
        return f"今天会自动给TA发{kind_name(row.kind)}，不必急着再发。"

    def _card_text(
        self,
        customer: Customer,
        began: date,
        days: int,
        scripts: list[PlaybookScript],
        first: int,
        automated: str = "",
    ) -> str:
        stage = self.pipeline.label(customer.stage)
        dormant = lifecycle_name(Lifecycle.DORMANT)
        wrote = customer.last_inbound_at
        if wrote is None or wrote < customer.added_at:  # the silence began with the friend request
            silence = f"{began.month}月{began.day}日加的好友，{days} 天了还没有回复过"
        else:
            silence = f"已经 {days} 天没有消息了（最后一次是{began.month}月{began.day}日）"
        lines = [f"{heading(customer, stage)}{silence}，转为「{dormant}」客户。"]
        reached = customer.last_outbound_at
        if reached is not None and local_day(reached, self.config.tz) > began:
            # the rep wrote since the silence began: another message is a choice, not a reflex
            day = local_day(reached, self.config.tz)
            lines.append(f"{day.month}月{day.day}日你已经联系过TA，还没有回音，不必急着再发。")
        elif automated:
            lines.append(automated)
        if not scripts:
            lines.append("话术库里暂时没有适合这个阶段的唤醒话术，可以自己发一句关心的话。")
            return "\n".join(lines)
        lines.append("给TA一个回来的理由（发送 /send 编号，可在编号后追加文字；不会自动发送）：")
        for number, script in enumerate(scripts, start=first):
            text = self.objections.render_script(script, customer.account_id, customer)
            lines.append(f"{number}. {script.title}：{text}")
        return "\n".join(lines)
