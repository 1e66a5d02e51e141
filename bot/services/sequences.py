"""Time-based sequences on the outbox: countdown ladders, aftercare after an order, new-friend
follow-ups; and the controls reps have over them (list, cancel, pause, resume).

Every row has an idempotency key from domain values (account, customer, sequence, plan, step), so
re-planning never duplicates, and its text is rendered from the template when it is sent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config, SequenceConfig
from bot.domain.hours import WorkingCalendar
from bot.domain.ids import parse_id
from bot.domain.kinds import AUTOMATED_KINDS, OPEN_STATUSES, PUSH_KINDS, Kind, Status
from bot.domain.schedule import QuietHours, at_local_time_after, countdown_left_text, plan_countdown
from bot.domain.stages import Pipeline
from bot.errors import CommandError
from bot.hooks import Hooks, Planned
from bot.services.budget import SendBudget
from bot.services.lifecycle_state import LifecycleStates
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.services.welcome import customer_variables, rep_variables
from bot.templates import TemplateLibrary
from storage.db import Database
from storage.models import Customer, Event, ScheduledMessage
from storage.repositories import Customers, Events, Outbox, StageHistory

COUNTDOWN, AFTERCARE, FOLLOWUP = Kind.COUNTDOWN, Kind.AFTERCARE, Kind.FOLLOWUP
# a countdown's call to action ("回复1我马上安排") needs the rep at work for this long after it is sent
ACT_WITHIN = timedelta(hours=1)
PUSHES: tuple[str, ...] = PUSH_KINDS
AUTOMATED: tuple[str, ...] = AUTOMATED_KINDS


@dataclass(frozen=True)
class OrderRecorded:
    old_stage: str
    new_stage: str
    aftercare_steps: int  # planned for this order
    replaced: int  # aftercare messages of an earlier order that were still pending, now cancelled
    late: list[str] = field(default_factory=list)  # steps (T+N) the send budget cannot fit in time
    crowd: int = 0  # other automated messages of the account planned in their stretch


@dataclass(frozen=True)
class CountdownPlan:
    steps: list[tuple[str, datetime]]  # (offset name, UTC time)
    skipped: list[str]  # offsets already past, or dropped for quiet hours
    pushes_resumed: bool = False  # the customer had asked to be pushed less; the rep overrode it
    late: list[str] = field(default_factory=list)  # offsets the send budget cannot fit in their window
    crowd: int = 0  # other automated messages of the account planned in their stretch


def _row(
    account_id: str,
    customer_id: int,
    kind: Kind,
    plan: str,
    step: str,
    template: str,
    due: datetime,
    not_after: datetime,
    now: datetime,
    context: dict[str, Any],
) -> ScheduledMessage:
    return outbox_row(
        account_id=account_id,
        customer_id=customer_id,
        kind=kind,
        key=message_key(account_id, kind, plan, step, customer_id=customer_id),
        sequence=f"{kind}:{plan}",
        step=step,
        template=template,
        due=due,
        not_after=not_after,
        now=now,
        context=context,
    )


class SequenceService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        hooks: Hooks,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.hooks = hooks
        self.pipeline = Pipeline(config.stages)
        self.quiet = QuietHours(config.reach.quiet_start, config.reach.quiet_end, config.tz)
        self.budget = SendBudget(config)

    # -- countdown --------------------------------------------------------------------------------

    async def plan_countdown(
        self, customer: Customer, deadline: datetime, offer: str, actor: str
    ) -> CountdownPlan:
        """Replace any countdown for this customer with a ladder towards ``deadline``."""
        assert customer.id is not None
        now = self.clock.now()
        offsets = self.config.countdown.offsets
        steps = plan_countdown(deadline, offsets, now, self.quiet)
        async with self.db.transaction() as session:
            fresh = await Customers(session).get(customer.id)
            assert fresh is not None
            pushes_resumed = fresh.pushes_stopped_at is not None
            if pushes_resumed:  # the rep decided, knowing the customer asked for less
                fresh.pushes_stopped_at = None
                if fresh.paused_at is None:
                    await self._unpause(session, fresh, actor, (FOLLOWUP,))
            await self._cancel(session, customer.id, [COUNTDOWN], now, "replaced by a new countdown")
            event = await Events(session).add(
                Event(
                    account_id=customer.account_id,
                    customer_id=customer.id,
                    kind="countdown_set",
                    at=now,
                    data={"deadline": deadline.isoformat(), "offer": offer, "actor": actor},
                )
            )
            plan = str(event.id)
            outbox = Outbox(session)
            for index, step in enumerate(steps):
                # sending "3 days left" once the 1-day step is due is pointless: that is its not_after
                not_after = steps[index + 1].at if index + 1 < len(steps) else deadline
                await outbox.plan(
                    _row(
                        customer.account_id,
                        customer.id,
                        COUNTDOWN,
                        plan,
                        step.offset,
                        self.config.countdown.template,
                        step.at,
                        not_after,
                        now,
                        {"deadline": deadline.isoformat(), "offer": offer},
                    )
                )
            keys = [
                message_key(customer.account_id, COUNTDOWN, plan, step.offset, customer_id=customer.id)
                for step in steps
            ]
            shortfall = await self.budget.shortfall(session, customer.account_id, keys, now)
        for step in steps[:1]:
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(step.at)))
        planned = {s.offset for s in steps}
        return CountdownPlan(
            [(s.offset, s.at) for s in steps],
            [o for o in offsets if o not in planned],
            pushes_resumed,
            [row.step for row in shortfall.late],
            shortfall.crowd,
        )

    # -- orders and aftercare ---------------------------------------------------------------------

    async def record_order(
        self, customer: Customer, product: str, actor: str, *, confirmed: bool = False
    ) -> OrderRecorded:
        """Move to the configured order stage (a second order: the repeat stage), stop countdowns,
        and plan this order's aftercare in place of any series still pending from an earlier
        order. A second order soon after the last one must be ``confirmed`` (a double-typed
        /order is not a repeat purchase): :class:`CommandError` otherwise."""
        assert customer.id is not None
        now = self.clock.now()
        cfg = self.config.aftercare
        async with self.db.transaction() as session:
            fresh = await Customers(session).get(customer.id)
            assert fresh is not None
            events = Events(session)
            last = await events.latest(customer.id, "order")
            window = timedelta(minutes=cfg.confirm_repeat_minutes)
            if last is not None and not confirmed and now - last.at < window:
                minutes = max(1, round((now - last.at).total_seconds() / 60))
                what = f"（{last.text}）" if last.text else ""
                raise CommandError(
                    f"TA {minutes} 分钟前刚记录过一次成交{what}。"
                    f"如果这是新的一单，请发 /order {product + ' ' if product else ''}确认"
                )
            old = fresh.stage
            stages = self.config.pipeline
            target = (stages.repeat_stage or stages.order_stage) if last is not None else stages.order_stage
            if self.pipeline.is_before(old, target):
                await StageHistory(session).move(fresh, target, actor, "order", now)
                await LifecycleStates(self.config).update(session, fresh, now, reason="order")
            event = await events.add(
                Event(
                    account_id=fresh.account_id,
                    customer_id=customer.id,
                    kind="order",
                    text=product,
                    at=now,
                    data={"product": product, "actor": actor},
                )
            )
            await self._cancel(session, customer.id, [COUNTDOWN], now, "customer ordered")
            if self.config.followup.skip_if_ordered:
                await self._cancel(session, customer.id, [FOLLOWUP], now, "customer ordered")
            # one aftercare series at a time: the newest order's (each order's rows have their own keys)
            replaced = await self._cancel(session, customer.id, [AFTERCARE], now, "replaced by a newer order")
            first = await self._plan_steps(
                session, fresh, AFTERCARE, str(event.id), cfg, now, {"product": product}
            )
            keys = [
                message_key(fresh.account_id, AFTERCARE, event.id, f"T+{step.days}", customer_id=customer.id)
                for step in cfg.steps
            ]
            shortfall = await self.budget.shortfall(session, fresh.account_id, keys, now)
            new = fresh.stage
        if first is not None:
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(first)))
        return OrderRecorded(
            old, new, len(cfg.steps), replaced, [row.step for row in shortfall.late], shortfall.crowd
        )

    # -- new-friend follow-ups --------------------------------------------------------------------

    async def plan_followups(
        self, session: AsyncSession, customer: Customer, welcomed_at: datetime, plan: str
    ) -> None:
        await Outbox(session).plan_many(self.followup_rows(customer, welcomed_at, plan))

    def followup_rows(self, customer: Customer, welcomed_at: datetime, plan: str) -> list[ScheduledMessage]:
        """A new friend's follow-ups, to plan in the welcome's transaction (the welcome may plan
        them with its own row in one statement)."""
        return self._step_rows(
            customer, FOLLOWUP, plan, self.config.followup, welcomed_at, {"since": welcomed_at.isoformat()}
        )

    async def _plan_steps(
        self,
        session: AsyncSession,
        customer: Customer,
        kind: Kind,
        plan: str,
        cfg: SequenceConfig,
        start: datetime,
        context: dict[str, Any],
    ) -> datetime | None:
        """Plan T+N steps after ``start`` at the sequence's local time; returns the earliest."""
        rows = self._step_rows(customer, kind, plan, cfg, start, context)
        await Outbox(session).plan_many(rows)  # one statement; a key planned already stays as it is
        return min((row.due_at for row in rows), default=None)

    def _step_rows(
        self,
        customer: Customer,
        kind: Kind,
        plan: str,
        cfg: SequenceConfig,
        start: datetime,
        context: dict[str, Any],
    ) -> list[ScheduledMessage]:
        assert customer.id is not None
        now = self.clock.now()
        rows = []
        for step in cfg.steps:
            due = at_local_time_after(start, step.days, cfg.at, self.config.tz)
            rows.append(
                _row(
                    customer.account_id,
                    customer.id,
                    kind,
                    plan,
                    f"T+{step.days}",
                    step.template,
                    due,
                    due + timedelta(hours=cfg.valid_hours),
                    now,
                    {**context, "days": step.days},
                )
            )
        return rows

    async def customer_replied(
        self, session: AsyncSession, customer: Customer, wrote_before: datetime | None
    ) -> int:
        """Follow-ups exist to break silence: once the customer writes, drop them (if configured).
        Part of the inbound event's transaction. ``wrote_before`` is when the customer last wrote
        before this message: follow-ups are planned only with a welcome, and a message after the
        latest welcome dropped them already, so then there is nothing to drop (no statement)."""
        assert customer.id is not None
        if not self.config.followup.skip_if_replied or not followups_may_be_open(customer, wrote_before):
            return 0
        return await self._cancel(session, customer.id, [FOLLOWUP], self.clock.now(), "customer replied")

    # -- rep controls -------------------------------------------------------------------------------

    async def pending(self, customer_id: int) -> list[ScheduledMessage]:
        async with self.db.transaction() as session:
            return await Outbox(session).open_for_customer(customer_id)

    async def cancel(self, customer_id: int, which: str) -> int:
        now = self.clock.now()
        async with self.db.transaction() as session:
            if which == "all":
                return await self._cancel(session, customer_id, None, now, "cancelled by the rep")
            row_id = parse_id(which.lstrip("#"))
            if row_id is None:
                raise CommandError("请写消息编号（/schedule 里的 #编号）或 all")
            row = await Outbox(session).get(row_id)
            if row is None or row.customer_id != customer_id or row.status not in OPEN_STATUSES:
                raise CommandError(f"这位客户没有待发的消息 #{which.lstrip('#')}")
            row.status, row.last_error, row.updated_at = Status.CANCELLED, "cancelled by the rep", now
            return 1

    async def pause(self, customer_id: int, actor: str, reason: str) -> int:
        """Stop automation for this customer (/pause): planned rows wait as ``paused``."""
        async with self.db.transaction() as session:
            customer = await Customers(session).get(customer_id)
            assert customer is not None
            return await self.hold_all(session, customer, actor, reason)

    async def hold_all(self, session: AsyncSession, customer: Customer, actor: str, reason: str) -> int:
        """An opt-out or /pause: every automated row waits as ``paused``. Returns the rows held."""
        return await self._hold(session, customer, "paused_at", AUTOMATED, "paused", actor, reason)

    async def hold_pushes(self, session: AsyncSession, customer: Customer, actor: str, reason: str) -> int:
        """A soft opt-out: countdowns and follow-ups wait as ``paused`` (none is planned or sent
        until /resume, /wrong or a new /countdown); aftercare goes on. Returns the rows held."""
        return await self._hold(
            session, customer, "pushes_stopped_at", PUSHES, "pushes_stopped", actor, reason
        )

    async def hold_countdown(self, session: AsyncSession, customer: Customer, reason: str) -> int:
        """A hot lead: the countdown's pending steps wait as ``paused`` until the rep decides (a new
        /countdown replaces them, /order cancels them, :meth:`release_countdown` lets them go on). No
        customer flag: nothing new is planned meanwhile. Returns the steps held (0: no active countdown)."""
        assert customer.id is not None
        now = self.clock.now()
        held = await Outbox(session).set_status_for_customer(
            customer.id,
            from_statuses=(Status.PENDING,),
            to_status=Status.PAUSED,
            at=now,
            reason=reason,
            kinds=(COUNTDOWN,),
        )
        if held:
            await Events(session).record(
                customer.account_id,
                "countdown_held",
                now,
                customer_id=customer.id,
                data={"reason": reason, "held": held},
            )
        return held

    async def release_countdown(self, customer_id: int, actor: str) -> int:
        """A hot lead that was a misread (/wrong): the held countdown goes on (steps whose moment
        passed expire), unless all automation or the pushes are held for another reason."""
        async with self.db.transaction() as session:
            customer = await Customers(session).get(customer_id)
            assert customer is not None
            if customer.paused_at is not None or customer.pushes_stopped_at is not None:
                return 0
            released = await self._unpause(session, customer, actor, (COUNTDOWN,))
        if released:
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(self.clock.now())))
        return released

    async def _hold(
        self,
        session: AsyncSession,
        customer: Customer,
        flag: str,
        kinds: tuple[str, ...],
        event: str,
        actor: str,
        reason: str,
    ) -> int:
        assert customer.id is not None
        now = self.clock.now()
        if getattr(customer, flag) is None:
            setattr(customer, flag, now)
        held = await Outbox(session).set_status_for_customer(
            customer.id,
            from_statuses=(Status.PENDING,),
            to_status=Status.PAUSED,
            at=now,
            reason=reason,
            kinds=kinds,
        )
        await Events(session).record(
            customer.account_id, event, now, customer_id=customer.id, data={"actor": actor, "reason": reason}
        )
        return held

    async def resume_pushes(self, customer_id: int, actor: str) -> bool:
        """Undo a soft opt-out (a misread one, say). Returns False when all automation stays
        paused (/pause or an opt-out): that takes /resume."""
        async with self.db.transaction() as session:
            customer = await Customers(session).get(customer_id)
            assert customer is not None
            customer.pushes_stopped_at = None
            if customer.paused_at is not None:
                return False
            await self._unpause(session, customer, actor, PUSHES)
        await self.db.after_commit(functools.partial(self.hooks.emit, Planned(self.clock.now())))
        return True

    async def resume(self, customer_id: int, actor: str) -> int:
        """Resume all automation: after /pause, an opt-out, or a soft opt-out."""
        async with self.db.transaction() as session:
            customer = await Customers(session).get(customer_id)
            assert customer is not None
            if customer.paused_at is None and customer.pushes_stopped_at is None:
                raise CommandError("这位客户的自动消息没有暂停")
            customer.paused_at = customer.pushes_stopped_at = None
            count = await self._unpause(session, customer, actor, None)
        await self.db.after_commit(functools.partial(self.hooks.emit, Planned(self.clock.now())))
        return count

    async def _unpause(
        self, session: AsyncSession, customer: Customer, actor: str, kinds: tuple[str, ...] | None
    ) -> int:
        assert customer.id is not None
        now = self.clock.now()
        outbox = Outbox(session)
        await outbox.set_status_for_customer(  # their moment passed while paused: never sent late
            customer.id,
            from_statuses=(Status.PAUSED,),
            to_status=Status.EXPIRED,
            at=now,
            reason="expired while paused",
            kinds=kinds,
            not_after_before=now,
        )
        resumed = await outbox.set_status_for_customer(
            customer.id,
            from_statuses=(Status.PAUSED,),
            to_status=Status.PENDING,
            at=now,
            reason="",
            kinds=kinds,
        )
        await Events(session).record(
            customer.account_id, "resumed", now, customer_id=customer.id, data={"actor": actor}
        )
        return resumed

    async def _cancel(
        self, session: AsyncSession, customer_id: int, kinds: list[str] | None, now: datetime, reason: str
    ) -> int:
        return await Outbox(session).set_status_for_customer(
            customer_id,
            from_statuses=OPEN_STATUSES,
            to_status=Status.CANCELLED,
            at=now,
            reason=reason,
            kinds=kinds,
        )


def followups_may_be_open(customer: Customer, wrote_before: datetime | None) -> bool:
    """Whether the customer may have follow-ups left: planned with a welcome (same transaction as
    ``welcome_planned_at``) and not yet answered by a message at or after that welcome."""
    planned = customer.welcome_planned_at
    return planned is not None and (wrote_before is None or wrote_before <= planned)


class SequenceComposer:
    """Renders countdown, aftercare and follow-up rows at send time, or drops them when unwanted."""

    def __init__(self, config: Config, templates: TemplateLibrary, clock: Clock) -> None:
        self.config = config
        self.templates = templates
        self.clock = clock
        self.pipeline = Pipeline(config.stages)

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "customer rows always carry their customer"
        account = self.config.account(row.account_id)
        hours = WorkingCalendar(account.profile.working_hours, self.config.tz)
        context: dict[str, Any] = {
            "rep": rep_variables(account, hours),
            "customer": customer_variables(customer),
        }
        now = self.clock.now()
        if row.kind == COUNTDOWN:
            deadline = datetime.fromisoformat(str(row.context["deadline"]))
            left = countdown_left_text(row.step, deadline - now) if now < deadline else None
            if left is None:
                return None
            context.update(
                offer=row.context.get("offer", ""),
                left=left,
                deadline=f"{deadline.astimezone(self.config.tz):%m月%d日 %H:%M}",
                can_act_soon=hours.open_for(now, ACT_WITHIN),
            )
        elif row.kind == AFTERCARE:
            context.update(product=row.context.get("product", ""), days=row.context.get("days", 0))
        elif row.kind == FOLLOWUP:
            if not self._followup_wanted(row, customer):
                return None
            context.update(days=row.context.get("days", 0))
        # the row's number rotates a set of attachments (proof images across a countdown's steps)
        rendered = self.templates.render_message(row.template, context, rotation=row.id or 0)
        return Composed(customer.wechat_id, rendered.text, attachment=rendered.attachment)

    def _followup_wanted(self, row: ScheduledMessage, customer: Customer) -> bool:
        cfg = self.config.followup
        since = datetime.fromisoformat(str(row.context.get("since")))
        if cfg.skip_if_replied and customer.last_inbound_at is not None and customer.last_inbound_at >= since:
            return False
        ordered = self.config.pipeline.order_stage
        return not (cfg.skip_if_ordered and not self.pipeline.is_before(customer.stage, ordered))
