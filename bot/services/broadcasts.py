"""Segment sends (群发 one to one): preview a filter's customers, confirm, stop what is left.

A preview plans nothing: it is kept as a ``broadcast_previewed`` event (the rep's line, who typed
it), so /confirm works after a restart and the broadcast's id is that event's id. /confirm selects
the customers again (what changed in between counts), records ``broadcast_confirmed`` (unique per
preview: a second /confirm plans nothing) and one outbox row per included customer with the key
``account:customer:broadcast:<id>``, all in one transaction. The rows are automated pushes: the
dispatcher applies quiet hours, caps, pacing, pauses and opt-outs again when each falls due.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.budget import Slot
from bot.domain.hours import WorkingCalendar
from bot.domain.kinds import OPEN_STATUSES, Kind, Status
from bot.domain.limits import MAX_NOTE_CHARS
from bot.domain.segments import Segment, SegmentError, parse_segment
from bot.domain.stages import Pipeline
from bot.domain.tags import TagVocabulary
from bot.errors import CommandError, TemplateError
from bot.hooks import Hooks, Planned
from bot.services.budget import SendBudget
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.services.welcome import customer_variables, rep_variables
from bot.templates import TemplateLibrary
from storage.db import Database
from storage.models import Customer, Event, ScheduledMessage
from storage.queries import broadcasts as queries
from storage.repositories import Events, Outbox

# how long a preview waits for /confirm
PREVIEW_TTL = timedelta(minutes=10)
# how long each message may wait for its turn (pacing, caps, quiet hours) before it is dropped
WINDOW = timedelta(days=3)
# a typed message: this placeholder becomes the customer's name (nothing when there is none)
NAME_PLACEHOLDER = "{称呼}"
TEMPLATE_PREFIXES = ("模板:", "模板：")
# why a matched customer gets nothing (the preview counts each)
OPTED_OUT, PAUSED, CAPPED, DELETED = "opted_out", "paused", "capped", "deleted"


class Incomplete(ValueError):
    """A /broadcast line without a filter or without a message: the command answers with its usage."""


@dataclass(frozen=True)
class Selection:
    """A segment as it stands now: who gets a message (with when it would go out), who does not and why."""

    matched: int
    included: list[tuple[Customer, datetime]]
    excluded: Counter[str] = field(default_factory=Counter)

    @property
    def last_at(self) -> datetime | None:
        return max((at for _, at in self.included), default=None)


@dataclass(frozen=True)
class Request:
    """A /broadcast line read: the segment, the message (typed text or a template) and the accounts."""

    segment: Segment
    text: str
    template: str
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class Preview:
    broadcast_id: int
    request: Request
    selection: Selection


@dataclass(frozen=True)
class Confirmed:
    broadcast_id: int
    planned: int
    selection: Selection


class BroadcastService:
    def __init__(
        self, db: Database, clock: Clock, config: Config, templates: TemplateLibrary, hooks: Hooks
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.templates = templates
        self.hooks = hooks
        self.pipeline = Pipeline(config.stages)
        self.vocabulary = TagVocabulary(config.tags.groups)
        self.budget = SendBudget(config)

    def read(self, line: str, account_id: str, role: str) -> Request:
        """The typed line as a request; :class:`CommandError` for a filter or scope it cannot use,
        :class:`Incomplete` when the line has no filter or no message (the caller's usage line)."""
        try:
            segment, message = parse_segment(line, self.pipeline, self.vocabulary)
        except SegmentError as exc:
            raise CommandError(str(exc)) from None
        if segment.empty or not message:
            raise Incomplete("a filter and a message are needed")
        scope = self.scope(account_id, role)
        if segment.accounts:
            outside = [a for a in segment.accounts if a not in scope]
            if outside:
                raise CommandError("只能给你自己（主管：你团队）的账号群发：" + "、".join(scope))
            scope = segment.accounts
        template = ""
        for prefix in TEMPLATE_PREFIXES:
            if message.startswith(prefix) and " " not in message.strip():
                template = f"broadcast/{message.removeprefix(prefix).strip()}.txt.j2"
                if template not in self.templates.names():
                    raise CommandError(f"没有这个群发模板：{message.removeprefix(prefix).strip()}")
        if not template and len(message) > MAX_NOTE_CHARS:
            raise CommandError(f"群发内容太长（{len(message)} 个字），最多 {MAX_NOTE_CHARS} 个字")
        return Request(segment, message if not template else "", template, tuple(scope))

    def scope(self, account_id: str, role: str) -> tuple[str, ...]:
        """A rep reaches their own customers; a supervisor those of the accounts they oversee."""
        if role == "rep":
            return (account_id,)
        return tuple(self.config.supervisor(role).accounts)

    async def preview(self, account_id: str, actor: str, role: str, line: str) -> Preview:
        """Count and time the broadcast ``line`` asks for; keep it for /confirm. Plans nothing."""
        request = self.read(line, account_id, role)
        now = self.clock.now()
        async with self.db.transaction() as session:
            selection = await self._select(session, request, now)
            if selection.included:
                self._check_renders(request, selection.included[0][0])
            event = await Events(session).add(
                Event(
                    account_id=account_id,
                    kind=queries.PREVIEWED,
                    at=now,
                    text=actor,
                    data={"line": line, "role": role},
                )
            )
        assert event.id is not None
        return Preview(event.id, request, selection)

    async def confirm(self, account_id: str, actor: str) -> Confirmed:
        """Plan the actor's pending preview: one row per customer it includes now."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            event = await queries.latest_preview(session, account_id, actor)
            if (
                event is None
                or event.id is None
                or await queries.is_confirmed(session, account_id, event.id)
                or await queries.cancelled_since(session, account_id, actor, event.id)
            ):
                raise CommandError("没有待确认的群发。先发 /broadcast <筛选> <内容> 预览，再 /confirm")
            if now - event.at > PREVIEW_TTL:
                minutes = int(PREVIEW_TTL.total_seconds() // 60)
                raise CommandError(
                    f"群发预览已过期（超过 {minutes} 分钟），请重新发送 /broadcast 预览后再确认"
                )
            request = self.read(str(event.data["line"]), account_id, str(event.data["role"]))
            await Events(session).record(
                account_id, queries.CONFIRMED, now, text=actor, external_id=str(event.id)
            )
            selection = await self._select(session, request, now, broadcast_id=event.id)
            outbox = Outbox(session)
            planned = 0
            for customer, _ in selection.included:
                planned += await outbox.plan(self._row(event.id, customer, request, now))
        if planned:
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(now)))
        return Confirmed(event.id, planned, selection)

    async def cancel(self, account_id: str, actor: str, role: str) -> int:
        """Stop every broadcast message of the actor's scope that has not gone out yet, and drop the
        actor's preview still waiting for /confirm."""
        now = self.clock.now()
        scope = self.scope(account_id, role)
        async with self.db.transaction() as session:
            stopped = await Outbox(session).set_status_for_accounts(
                scope,
                Kind.BROADCAST,
                from_statuses=OPEN_STATUSES,
                to_status=Status.CANCELLED,
                at=now,
                reason="broadcast stopped by the rep",
            )
            await Events(session).record(
                account_id, queries.CANCELLED, now, text=actor, data={"stopped": stopped}
            )
        return stopped

    async def _select(
        self, session: AsyncSession, request: Request, now: datetime, broadcast_id: int | None = None
    ) -> Selection:
        segment = request.segment
        found = await queries.segment(
            session,
            request.accounts,
            segment.stages,
            segment.lifecycles,
            [(tag.group, tag.value) for tag in segment.tags],
        )
        if segment.silent_days:
            quiet_since = now - timedelta(days=segment.silent_days)
            found = [c for c in found if _last_active(c) <= quiet_since]
        paused_ids = [c.id for c in found if c.id is not None and c.paused_at is not None]
        why_paused = await queries.latest_reasons(session, paused_ids, "paused")
        excluded: Counter[str] = Counter()
        candidates: dict[str, list[Customer]] = {}
        for customer in found:
            reason = _excluded(customer, why_paused.get(customer.id or 0, ""))
            if reason:
                excluded[reason] += 1
            else:
                candidates.setdefault(customer.account_id, []).append(customer)
        included: list[tuple[Customer, datetime]] = []
        for account_id, customers in candidates.items():
            slots = [
                Slot(self._key(broadcast_id, c), c.id or 0, now, now + WINDOW, c.id or 0) for c in customers
            ]
            times = await self.budget.forecast(session, account_id, slots, now)
            for customer, slot in zip(customers, slots, strict=True):
                at = times.get(slot.key)
                if at is None:
                    excluded[CAPPED] += 1
                else:
                    included.append((customer, at))
        return Selection(len(found), included, excluded)

    def _key(self, broadcast_id: int | None, customer: Customer) -> str:
        plan = broadcast_id if broadcast_id is not None else "preview"
        return message_key(customer.account_id, Kind.BROADCAST, plan, customer_id=customer.id)

    def _row(
        self, broadcast_id: int, customer: Customer, request: Request, now: datetime
    ) -> ScheduledMessage:
        return outbox_row(
            account_id=customer.account_id,
            customer_id=customer.id,
            kind=Kind.BROADCAST,
            key=self._key(broadcast_id, customer),
            sequence=f"{Kind.BROADCAST}:{broadcast_id}",
            template=request.template or "-",
            due=now,
            not_after=now + WINDOW,
            now=now,
            context={"text": request.text} if request.text else {},
        )

    def _check_renders(self, request: Request, customer: Customer) -> None:
        if not request.template:
            return
        try:
            self.templates.render_message(request.template, message_context(self.config, customer))
        except TemplateError:
            raise CommandError("这个群发模板有错误，发不出去；请运行 salesbot check 查看") from None


def message_context(config: Config, customer: Customer) -> dict[str, object]:
    account = config.account(customer.account_id)
    hours = WorkingCalendar(account.profile.working_hours, config.tz)
    return {"rep": rep_variables(account, hours), "customer": customer_variables(customer)}


def _last_active(customer: Customer) -> datetime:
    if customer.last_inbound_at is None:
        return customer.added_at
    return max(customer.last_inbound_at, customer.added_at)


def _excluded(customer: Customer, paused_reason: str) -> str:
    """Why a matched customer gets no message now ("" when they get one)."""
    if customer.deleted_at is not None:
        return DELETED
    if customer.pushes_stopped_at is not None or (
        customer.paused_at is not None and paused_reason.startswith("opt-out")
    ):
        return OPTED_OUT
    if customer.paused_at is not None:
        return PAUSED
    return ""


class BroadcastComposer:
    """Renders a broadcast row for its customer when it falls due (the dispatcher has already
    checked pauses, opt-outs, quiet hours, caps and pacing)."""

    def __init__(self, config: Config, templates: TemplateLibrary) -> None:
        self.config = config
        self.templates = templates

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "broadcast rows always carry their customer"
        context = message_context(self.config, customer)
        if row.template != "-":
            rendered = self.templates.render_message(row.template, context, rotation=row.id or 0)
            return Composed(customer.wechat_id, rendered.text, attachment=rendered.attachment)
        name = customer_variables(customer)["name"]
        text = str(row.context.get("text", "")).replace(NAME_PLACEHOLDER, name).strip()
        return Composed(customer.wechat_id, text) if text else None
