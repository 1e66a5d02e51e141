"""The coaching card: the next best step for a customer, with playbook scripts to ``/send``.

After a customer's first reply and after each stage change (/stage, /order, the automatic move on
the first reply) the rep's console gets who the customer is, where they stand, what the playbook
says to do next and 2-3 of its scripts for the account's vertical, numbered from the same sequence
as objection suggestions (a ``coach`` event keeps them), so ``/send N`` goes to the card's customer
whoever is current meanwhile. Cards are rate limited so the console stays readable: at most one
per customer per ``[coach] min_gap_minutes``, and none while the rep is busy with the customer
(wrote to them, had a script sent, or ran a command about them within that gap). The card is an
outbox row planned in the caller's transaction: the inbound message's, or the command's unit of
work.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.display import PLAY_ADVICE, play_name
from bot.domain.kinds import Kind
from bot.domain.stages import Pipeline
from bot.hooks import Hooks, Planned
from bot.playbook.library import NEXT_PLAYS, REPLY_CARD, STAGE_CARD, PlaybookLibrary, PlaybookScript
from bot.services.alerts import heading
from bot.services.objections import ObjectionService
from bot.services.planning import message_key, outbox_row
from storage.db import Database
from storage.models import Customer, Event
from storage.repositories import Customers, Events, Outbox

COACH = Kind.COACH
# what shows the rep is busy with a customer: a message typed to them, a script sent, a command
BUSY_EVENTS = ("rep_message", "script_sent", "command")
# a card is worth reading only while the moment lasts
CARD_VALID = timedelta(hours=1)


class Coach:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        objections: ObjectionService,
        playbook: PlaybookLibrary,
        *,
        hooks: Hooks,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.objections = objections
        self.playbook = playbook
        self.pipeline = Pipeline(config.stages)
        self.hooks = hooks

    async def first_reply(self, session: AsyncSession, customer: Customer) -> int | None:
        """Part of the inbound event's transaction. Returns the card's outbox id (None: no card)."""
        return await self.card(session, customer, "第一次回复了你", REPLY_CARD)

    async def stage_changed(self, customer_id: int, old: str, new: str) -> None:
        """A command moved the customer (/stage, /order): plan the card inside the command's unit of
        work; it goes out once that commits."""
        if old == new:
            return
        async with self.db.transaction() as session:
            customer = await Customers(session).get(customer_id)
            if customer is None:
                return
            why = f"阶段：{self.pipeline.label(old)} → {self.pipeline.label(new)}"
            planned = await self.card(session, customer, why, STAGE_CARD)
        if planned is not None:
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(self.clock.now())))

    async def card(
        self, session: AsyncSession, customer: Customer, why: str, moments: frozenset[str] = STAGE_CARD
    ) -> int | None:
        """Plan the customer's card in the caller's transaction, unless coaching is off, the rate
        limit holds, or the playbook has nothing for their stage. ``moments``: the scripts' moments
        that fit what just happened (a stage just begun offers no "how was the first week")."""
        if not self.config.coach.enabled or customer.id is None or customer.deleted_at is not None:
            return None
        now = self.clock.now()
        since = now - timedelta(minutes=self.config.coach.min_gap_minutes)
        events = Events(session)
        if await events.any_since(customer.id, ("coach", *BUSY_EVENTS), since):
            return None
        plays, scripts = self.next_step(customer, moments)
        if not scripts:
            return None
        account_id = customer.account_id
        first = await self.objections.next_number(session, account_id)
        # the scripts and their numbers are kept with the event: /send N finds what the rep saw
        event = await events.add(
            Event(
                account_id=account_id,
                customer_id=customer.id,
                kind="coach",
                at=now,
                text=why,
                data={
                    "label": plays[0],
                    "plays": list(plays),
                    "stage": customer.stage,
                    "scripts": [s.id for s in scripts],
                    "first": first,
                },
            )
        )
        text = self._text(customer, why, plays, scripts, first)
        return await Outbox(session).plan_returning_id(
            outbox_row(
                account_id=account_id,
                customer_id=None,  # a console message
                kind=COACH,
                key=message_key(account_id, COACH, event.id),
                due=now,
                not_after=now + CARD_VALID,
                now=now,
                context={"text": text, "about": customer.id},
            )
        )

    def next_step(
        self, customer: Customer, moments: frozenset[str] = STAGE_CARD
    ) -> tuple[tuple[str, ...], list[PlaybookScript]]:
        """The plays the playbook names for the customer's stage and the scripts for the card:
        the first play's, one of the second play's (the vertical's own scripts first, then those
        made for the moment), only scripts whose moment is in ``moments``."""
        names = self.pipeline.script_stages(customer.stage)
        # a stage that is several steps (咨询: stranger and potential) is coached as its latest: a
        # card follows a reply, so the customer is engaged
        plays = next((NEXT_PLAYS[name] for name in reversed(names) if name in NEXT_PLAYS), ())
        if not plays:
            return (), []
        vertical = self.config.account(customer.account_id).vertical
        wanted = self.config.coach.scripts

        def fitting(play: str) -> list[PlaybookScript]:
            found: list[PlaybookScript] = []
            for name in names:
                for script in self.playbook.scripts(vertical=vertical, play=play, stage=name):
                    if script not in found and script.moment in moments:
                        found.append(script)
            # stable: the vertical's first, within them those written for this moment
            return sorted(found, key=lambda s: (s.vertical != vertical, s.moment == "any"))

        lead = fitting(plays[0])
        extra = fitting(plays[1])[:1] if len(plays) > 1 and wanted > 1 else []
        chosen = lead[: wanted - len(extra)] + extra
        return (plays if extra else plays[:1]), chosen

    def _text(
        self,
        customer: Customer,
        why: str,
        plays: tuple[str, ...],
        scripts: list[PlaybookScript],
        first: int,
    ) -> str:
        stage = self.pipeline.label(customer.stage)
        steps = " → ".join(play_name(play) for play in plays)
        lines = [
            f"{heading(customer, stage)}{why}",
            f"下一步（{steps}）：{PLAY_ADVICE.get(plays[0], '')}",
            "可以这样说（发送 /send 编号，可在编号后追加文字）：",
        ]
        for number, script in enumerate(scripts, start=first):
            lines.append(f"{number}. {self.objections.render_script(script, customer.account_id, customer)}")
        return "\n".join(lines)
