"""The value-icebreaker welcome: accept a friend request, create the customer, plan the welcome.

The welcome is a row in the durable outbox (due after a human-like pause), so it survives restarts
and is sent exactly once. Duplicate or replayed friendship events, a ``Confirm`` after our own
accept, and a re-add within the configured window never plan a second welcome.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import AccountConfig, Config
from bot.domain.channels import match_channel
from bot.domain.hours import WorkingCalendar
from bot.domain.kinds import Kind
from bot.domain.limits import MAX_NAME_CHARS, clip
from bot.domain.names import spoken_name
from bot.domain.tags import TagRejected, TagVocabulary
from bot.errors import DeliveryUnknown, NotConnected
from bot.faults import crash_point
from bot.hooks import AcceptInterrupted, Hooks, Planned
from bot.services.customers import ensure_customer
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.templates import TemplateLibrary
from bot.transport.base import Contact, FriendRequest, Transport
from storage.db import Database
from storage.group_commit import must_reach_disk
from storage.models import Customer, Event, ScheduledMessage
from storage.queries import friends
from storage.repositories import Customers, Events, Outbox, StageHistory, Tags

log = logging.getLogger(__name__)

WELCOME = Kind.WELCOME


def rep_variables(account: AccountConfig, calendar: WorkingCalendar) -> dict[str, str]:
    profile = account.profile
    return {
        "nickname": profile.nickname,
        "role": profile.role,
        "company": profile.company,
        "service": profile.service,
        "working_hours": calendar.describe(),
        "next_step": profile.next_step,
        "gift": profile.gift,
        "hook_question": profile.hook_question,
    }


def customer_variables(customer: Customer) -> dict[str, str]:
    """``name`` is what a person would call the customer ("" when the remark and nickname hold no
    name: templates then say 您好, never 您您好)."""
    name = spoken_name(customer.remark, customer.display_name)
    return {
        # a name too long to say is not said: a 100 KB display name must not make a 100 KB welcome,
        # and a customer should never read a cut name ("李李李…您好")
        "name": name if len(name) <= MAX_NAME_CHARS else "",
        "remark": clip(customer.remark, MAX_NAME_CHARS),
        "channel": customer.source_channel,
    }


def reply_variables(config: Config, account_id: str, customer: Customer, now: datetime) -> dict[str, Any]:
    """What a message answering the customer knows at send time: the rep, the customer, and
    whether the rep is away now (``back_at``: when the rep is next at work)."""
    account = config.account(account_id)
    calendar = WorkingCalendar(account.profile.working_hours, config.tz)
    return {
        "rep": rep_variables(account, calendar),
        "customer": customer_variables(customer),
        "off_hours": not calendar.is_open(now),
        "back_at": calendar.back_at_text(now),
    }


class FollowupPlanner(Protocol):
    async def plan_followups(
        self, session: AsyncSession, customer: Customer, welcomed_at: datetime, plan: str
    ) -> None:
        """Plan the new friend's follow-ups, in the welcome's transaction."""

    def followup_rows(self, customer: Customer, welcomed_at: datetime, plan: str) -> list[ScheduledMessage]:
        """The follow-ups :meth:`plan_followups` plans, for the caller to insert with its own rows."""


class WelcomeService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        transports: Mapping[str, Transport],
        rng: random.Random,
        hooks: Hooks,
        followups: FollowupPlanner,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.transports = transports
        self.rng = rng
        self.hooks = hooks
        self.followups = followups

    async def on_friend_request(
        self, account_id: str, request: FriendRequest, *, received_at: datetime | None = None
    ) -> None:
        """Accept the request, then create the customer and plan the welcome. The request is
        recorded durably before the accept, so a kill between the platform's accept and our
        write is finished by :meth:`reconcile` at the next start (``received_at`` is set then)."""
        now = self.clock.now()
        reconciling = received_at is not None
        if not request.confirmed:
            if not reconciling:
                await self.db.retrying_unit(
                    lambda session: Events(session).record(
                        account_id,
                        "friend_request_received",
                        now,
                        text=request.hello,
                        data={
                            "contact": request.contact.contact_id,
                            "name": request.contact.name,
                            "alias": request.contact.alias,
                        },
                        external_id=request.friendship_id,
                    )
                )
            try:
                await self.transports[account_id].accept(request)
                crash_point("welcome.accepted")
            except (NotConnected, DeliveryUnknown) as exc:
                log.warning(
                    "account %s: accepting %s interrupted (%s); trying again after reconnecting",
                    account_id,
                    request.contact.contact_id,
                    exc,
                )
                # try the request again once the account is back
                await self.hooks.emit(AcceptInterrupted(account_id, request))
                return
            except Exception as exc:
                if reconciling:
                    # accepted before the kill (the platform refuses a second accept): go on
                    log.info(
                        "account %s: %s was accepted before a restart (%s)",
                        account_id,
                        request.contact.contact_id,
                        exc,
                    )
                else:
                    log.warning(
                        "account %s: accepting %s failed: %s", account_id, request.contact.contact_id, exc
                    )
                    await self._accept_failed(account_id, request, now, exc)
                    return
        await self._record_friend(account_id, request, now, received_at or now)

    async def _accept_failed(
        self, account_id: str, request: FriendRequest, now: datetime, exc: Exception
    ) -> None:
        await self.db.retrying_unit(
            lambda session: Events(session).record(
                account_id,
                "accept_failed",
                now,
                text=request.hello,
                data={"contact": request.contact.contact_id, "error": str(exc)},
                external_id=request.friendship_id,  # settles the received request
            )
        )

    async def _record_friend(
        self, account_id: str, request: FriendRequest, now: datetime, received_at: datetime
    ) -> None:
        """The customer, the channel rule, and the welcome (and follow-ups) while still valid: one
        unit, run again as a whole when the database is busy (the accept is not repeated).

        A group commit: a request we accepted was recorded durably before the accept, so should a
        machine's crash lose this unit, :meth:`reconcile` finishes it at the next start, and the
        welcome goes out only after the dispatcher's durable reservation. A confirmation that
        makes or brings back a customer (the contact added on the phone) has no such record: that
        unit reaches the disk before it returns. A confirmation after our own accept is neither."""
        await self.db.retrying_unit(
            functools.partial(self._befriend, account_id, request, now, received_at), group_commit=True
        )

    async def _befriend(
        self,
        account_id: str,
        request: FriendRequest,
        now: datetime,
        received_at: datetime,
        session: AsyncSession,
    ) -> None:
        if await self._new_friend(account_id, request, now, received_at, session):
            if request.confirmed:
                must_reach_disk(session)
            return
        valid = timedelta(hours=self.config.dispatch.welcome_valid_hours)
        first_stage = self.config.stages[0].key
        customer, created = await ensure_customer(
            session, account_id, request.contact, first_stage, now, actor="system"
        )
        assert customer.id is not None
        if request.confirmed and (created or customer.deleted_at is not None):
            must_reach_disk(session)
        await Events(session).record(
            account_id,
            "friend_confirmed" if request.confirmed else "friend_request",
            now,
            customer_id=customer.id,
            text=request.hello,
            external_id=request.friendship_id,
        )
        if customer.deleted_at is not None:
            customer.deleted_at = None  # came back
            await Events(session).record(account_id, "friend_readded", now, customer_id=customer.id)
        template = await self._apply_channel(session, customer, request.hello, now)
        if self._welcomed_recently(customer, now) or now > received_at + valid:
            return  # welcomed before, or too late for a welcome to make sense
        due = self._welcome_due(now)
        planned = await Outbox(session).plan(
            self._welcome_row(account_id, customer.id, request.friendship_id, template, due, received_at)
        )
        if planned:
            customer.welcome_planned_at = now
            await Events(session).record(account_id, "welcome_planned", now, customer_id=customer.id)
            await self.followups.plan_followups(session, customer, due, request.friendship_id)
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(due)))

    async def _new_friend(
        self,
        account_id: str,
        request: FriendRequest,
        now: datetime,
        received_at: datetime,
        session: AsyncSession,
    ) -> bool:
        """The usual case, a contact who is no customer yet, in a few statements: the customer row
        (welcome and channel set on insert), its first stage, its events in one insert, the
        channel's tag, and the welcome with its follow-ups in one insert. Returns False (nothing
        done) when the contact is a customer already: :meth:`_befriend` goes the long way then."""
        first_stage = self.config.stages[0].key
        rule = match_channel(request.hello, self.config.welcome.channels)
        template = rule.template if rule is not None else self.config.welcome.template
        welcome = now <= received_at + timedelta(hours=self.config.dispatch.welcome_valid_hours)
        contact = request.contact
        customer = Customer(
            account_id=account_id,
            wechat_id=contact.contact_id,
            display_name=contact.name,
            remark=contact.alias,
            source_channel=rule.label if rule is not None else "",
            stage=first_stage,
            added_at=now,
            welcome_planned_at=now if welcome else None,
        )
        customer_id = await Customers(session).insert_new(customer)
        if customer_id is None:
            return False
        customer.id = customer_id
        await StageHistory(session).record(customer_id, None, first_stage, "system", "new friend", now)
        kind = "friend_confirmed" if request.confirmed else "friend_request"
        events = [
            Event(account_id=account_id, customer_id=customer_id, kind="customer_created", at=now),
            Event(
                account_id=account_id,
                customer_id=customer_id,
                kind=kind,
                text=request.hello,
                external_id=request.friendship_id,
                at=now,
            ),
        ]
        if welcome:
            events.append(
                Event(account_id=account_id, customer_id=customer_id, kind="welcome_planned", at=now)
            )
        await Events(session).record_all(events)
        if rule is not None and rule.tag:
            await self._tag(session, customer_id, rule.key, rule.tag, now)
        if welcome:
            due = self._welcome_due(now)
            row = self._welcome_row(
                account_id, customer_id, request.friendship_id, template, due, received_at
            )
            followups = self.followups.followup_rows(customer, due, request.friendship_id)
            await Outbox(session).plan_many([row, *followups])
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(due)))
        return True

    def _welcome_due(self, now: datetime) -> datetime:
        return now + timedelta(seconds=round(self.rng.uniform(*self.config.welcome.delay_seconds)))

    def _welcome_row(
        self,
        account_id: str,
        customer_id: int,
        friendship_id: str,
        template: str,
        due: datetime,
        received_at: datetime,
    ) -> ScheduledMessage:
        valid = timedelta(hours=self.config.dispatch.welcome_valid_hours)
        return outbox_row(
            account_id=account_id,
            customer_id=customer_id,
            kind=WELCOME,
            key=message_key(account_id, WELCOME, friendship_id, customer_id=customer_id),
            step=friendship_id,
            template=template,
            due=due,
            not_after=max(due, received_at + valid),
            now=self.clock.now(),
        )

    async def reconcile(self, account_id: str) -> int:
        """At startup: finish friend requests recorded as received but never settled (accepted on
        the platform, then the process was killed). Returns how many were found."""
        async with self.db.transaction() as session:
            pending = await friends.unsettled_requests(session, account_id)
        for event in pending:
            contact = Contact(
                str(event.data["contact"]), str(event.data.get("name", "")), str(event.data.get("alias", ""))
            )
            request = FriendRequest(str(event.external_id), contact, event.text)
            log.warning(
                "account %s: finishing friend request from %s (interrupted)", account_id, contact.contact_id
            )
            await self.on_friend_request(account_id, request, received_at=event.at)
        return len(pending)

    def _welcomed_recently(self, customer: Customer, now: datetime) -> bool:
        if customer.welcome_planned_at is None:
            return False
        window = timedelta(days=self.config.welcome.readd_window_days)
        return now - customer.welcome_planned_at < window

    async def _apply_channel(
        self, session: AsyncSession, customer: Customer, hello: str, now: datetime
    ) -> str:
        """Tag the customer with the channel the hello text reveals; return the welcome template to use."""
        rule = match_channel(hello, self.config.welcome.channels)
        if rule is None:
            return self.config.welcome.template
        if not customer.source_channel:
            customer.source_channel = rule.label
        if rule.tag and customer.id is not None:
            await self._tag(session, customer.id, rule.key, rule.tag, now)
        return rule.template

    async def _tag(
        self, session: AsyncSession, customer_id: int, rule: str, text: str, now: datetime
    ) -> None:
        try:
            tag = TagVocabulary(self.config.tags.groups).parse(text)
        except TagRejected as exc:
            log.warning("channel rule %s: tag %r rejected: %s", rule, text, exc)
        else:
            await Tags(session).add(customer_id, tag.group, tag.value, "channel_rule", "system", now)


class WelcomeComposer:
    """Renders a welcome at send time: off-hours wording depends on when it actually goes out."""

    def __init__(self, config: Config, templates: TemplateLibrary, clock: Clock) -> None:
        self.config = config
        self.templates = templates
        self.clock = clock

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None, "customer rows always carry their customer"
        now = self.clock.now()
        context: dict[str, Any] = {
            **reply_variables(self.config, row.account_id, customer, now),
            "channel": customer.source_channel,
            "now": f"{now.astimezone(self.config.tz):%m月%d日 %H:%M}",
            **row.context,
        }
        # the row's number rotates a set of attachments (proof images across a countdown's steps)
        rendered = self.templates.render_message(row.template, context, rotation=row.id or 0)
        return Composed(customer.wechat_id, rendered.text, attachment=rendered.attachment)
