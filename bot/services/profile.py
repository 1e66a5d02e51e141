"""What reps learn about customers: tags, stages, notes, cards and search. One transaction per call;
business errors are :class:`CommandError` with a sentence for the rep, and change nothing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.ids import parse_id
from bot.domain.limits import MAX_ECHO_CHARS, MAX_NOTE_CHARS, clip
from bot.domain.stages import Pipeline
from bot.domain.tags import Tag, TagRejected, TagVocabulary
from bot.errors import CommandError, TransportError
from bot.services.lifecycle_state import LifecycleStates
from bot.transport.base import Transport
from storage.db import Database
from storage.models import Customer, CustomerTag, Note, ScheduledMessage, StageChange
from storage.queries import listings
from storage.queries import profile as queries
from storage.repositories import Customers, Events, Notes, Outbox, StageHistory, Tags

log = logging.getLogger(__name__)

# how many of a customer's latest stage moves the card lists
CARD_STAGE_MOVES = 8


@dataclass(frozen=True)
class Card:
    customer: Customer
    tags: list[CustomerTag]
    notes: list[Note]
    pending: list[ScheduledMessage]
    objections: list[str]
    stages: list[StageChange] = field(default_factory=list)  # newest few, oldest first


@dataclass(frozen=True)
class Page:
    customers: list[Customer]
    page: int
    pages: int
    total: int


class ProfileService:
    def __init__(
        self, db: Database, clock: Clock, config: Config, transports: Mapping[str, Transport]
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.transports = transports
        self.pipeline = Pipeline(config.stages)
        self.vocabulary = TagVocabulary(config.tags.groups)
        self.lifecycle = LifecycleStates(config)

    def parse_tags(self, words: list[str]) -> list[Tag]:
        try:
            return [self.vocabulary.parse(word) for word in words]
        except TagRejected as exc:
            raise CommandError(str(exc)) from None

    def sort_tags(self, words: list[str]) -> tuple[list[Tag], list[tuple[str, str]]]:
        """The tags the vocabulary accepts, and (word as typed, why not) for those it refuses."""
        accepted: list[Tag] = []
        refused: list[tuple[str, str]] = []
        for word in words:
            try:
                accepted.append(self.vocabulary.parse(word))
            except TagRejected as exc:
                refused.append((word, str(exc)))
        return accepted, refused

    async def add_tags(self, customer_id: int, tags: list[Tag], actor: str) -> tuple[list[Tag], list[Tag]]:
        """Returns (added, already present)."""
        now = self.clock.now()
        added: list[Tag] = []
        present: list[Tag] = []
        async with self.db.transaction() as session:
            customer = await self._customer(session, customer_id)
            for tag in tags:
                if await Tags(session).add(customer_id, tag.group, tag.value, "manual", actor, now):
                    added.append(tag)
                    await Events(session).record(
                        customer.account_id,
                        "tag_added",
                        now,
                        customer_id=customer_id,
                        text=self.vocabulary.display(tag),
                        data={"group": tag.group, "value": tag.value},
                    )
                else:
                    present.append(tag)
        await self.db.after_commit(functools.partial(self._sync, customer, added, remove=False))
        return added, present

    async def remove_tag(self, customer_id: int, tag: Tag, actor: str) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            customer = await self._customer(session, customer_id)
            if not await Tags(session).remove(customer_id, tag.group, tag.value):
                raise CommandError(f"客户没有标签「{self.vocabulary.display(tag)}」")
            await Events(session).record(
                customer.account_id,
                "tag_removed",
                now,
                customer_id=customer_id,
                text=self.vocabulary.display(tag),
                data={"actor": actor},
            )
        await self.db.after_commit(functools.partial(self._sync, customer, [tag], remove=True))

    async def set_stage(
        self, customer_id: int, stage_name: str, actor: str, reason: str = "manual"
    ) -> tuple[str, str]:
        """Move the customer; returns (old stage key, new stage key)."""
        key = self.pipeline.resolve(stage_name)
        if key is None:
            shown = clip(stage_name, MAX_ECHO_CHARS)
            raise CommandError(f"没有阶段「{shown}」。可用阶段：{self.pipeline.describe()}")
        now = self.clock.now()
        async with self.db.transaction() as session:
            customer = await self._customer(session, customer_id)
            old = customer.stage
            if old == key:
                raise CommandError(f"客户已经在「{self.pipeline.label(key)}」阶段")
            await StageHistory(session).move(customer, key, actor, reason, now)
            await self.lifecycle.update(session, customer, now, reason="stage")
        return old, key

    async def add_note(self, customer_id: int, text: str, actor: str) -> None:
        if len(text) > MAX_NOTE_CHARS:
            raise CommandError(
                f"备注太长（{len(text)} 个字），一条备注最多 {MAX_NOTE_CHARS} 个字，请精简或分几条记"
            )
        now = self.clock.now()
        async with self.db.transaction() as session:
            customer = await self._customer(session, customer_id)
            await Notes(session).add(customer_id, text, actor, now)
            await Events(session).record(
                customer.account_id, "note_added", now, customer_id=customer_id, text=text
            )

    async def card(self, customer_id: int) -> Card:
        async with self.db.transaction() as session:
            customer = await self._customer(session, customer_id)
            return Card(
                customer=customer,
                tags=await Tags(session).for_customer(customer_id),
                notes=await Notes(session).for_customer(customer_id),
                pending=await Outbox(session).pending_for_customer(customer_id),
                objections=await queries.objection_labels(session, customer_id),
                stages=await StageHistory(session).for_customer(customer_id, CARD_STAGE_MOVES),
            )

    async def find(self, account_id: str, query: str, page: int, page_size: int) -> Page:
        """Customers whose name or remark contains ``query``, or who have that tag or stage."""
        stage = self.pipeline.resolve(query)
        try:
            tag = self.vocabulary.parse(query)
        except TagRejected:
            tag = None
        exact = (tag.group, tag.value) if tag is not None and tag.group else None
        async with self.db.transaction() as session:
            total = await queries.count_found(session, account_id, query, stage, exact)
            pages = max(1, -(-total // page_size))
            if page > pages:
                raise CommandError(f"只有 {pages} 页结果")
            rows = await queries.found(
                session, account_id, query, stage, exact, (page - 1) * page_size, page_size
            )
        return Page(rows, page, pages, total)

    async def stage_counts(self, account_id: str) -> dict[str, int]:
        async with self.db.transaction() as session:
            return await listings.stage_counts(session, account_id)

    async def match(self, account_id: str, name: str) -> list[Customer]:
        """Customers a rep may mean by ``name``: short id (#12), exact name/remark, else a substring
        (case-insensitive); ordered by id."""
        async with self.db.transaction() as session:
            short = name.removeprefix("#")
            if short.isdigit():  # an id; one no column can hold (or "²") names nobody
                customer_id = parse_id(short)
                customer = None if customer_id is None else await Customers(session).get(customer_id)
                return [customer] if customer is not None and customer.account_id == account_id else []
            folded = name.lower()
            exact = await queries.named(session, account_id, folded)
            return exact or await queries.name_contains(session, account_id, folded)

    async def _customer(self, session: AsyncSession, customer_id: int) -> Customer:
        customer = await Customers(session).get(customer_id)
        if customer is None:
            raise CommandError(f"没有编号为 #{customer_id} 的客户")
        return customer

    async def _sync(self, customer: Customer, tags: list[Tag], *, remove: bool) -> None:
        """Mirror tags on the platform, once the change is committed (never on a rolled-back one)."""
        if not self.config.tags.sync_to_platform or not tags:
            return
        transport = self.transports[customer.account_id]
        for tag in tags:
            try:
                await transport.tag_contact(customer.wechat_id, self.vocabulary.display(tag), remove=remove)
            except TransportError as exc:
                log.warning("tag sync for customer %s failed: %s", customer.id, exc)


def when(instant: datetime | None, config: Config) -> str:
    return "—" if instant is None else f"{instant.astimezone(config.tz):%Y-%m-%d %H:%M}"


def day_and_time(instant: datetime, config: Config, now: datetime) -> str:
    """A moment as a rep reads it, local: 3月28日 10:00 (with the year when it is not ``now``'s)."""
    local = instant.astimezone(config.tz)
    year = f"{local.year}年" if local.year != now.astimezone(config.tz).year else ""
    return f"{year}{local.month}月{local.day}日 {local:%H:%M}"
