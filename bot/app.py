"""Wires configuration, storage, templates, transports and services into one running bot.

Inbound flow: transport event -> :meth:`SalesBot.handle` -> a use case in ``bot.services``.
Outbound flow: use case -> outbox row or :class:`Messenger` -> transport.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.commands import REGISTRY
from bot.config import Config
from bot.domain.kinds import kind_name
from bot.domain.stages import Pipeline
from bot.domain.tags import TagRejected, TagVocabulary
from bot.errors import ConfigError, SalesbotError, TemplateError, TransportError
from bot.objections.library import ObjectionLibrary
from bot.objections.reader import load_classifier, load_library, load_model
from bot.services.alerts import ALERT, OWED, AlertComposer, Alerts, OwedReplyComposer, OwedReplyNudges
from bot.services.console import ConsoleService
from bot.services.console_directory import ConsoleDirectory
from bot.services.customers import CustomerService
from bot.services.digest import DIGEST, DigestComposer, DigestService
from bot.services.feedback import FeedbackService
from bot.services.messenger import Messenger
from bot.services.objections import REPLY, ObjectionService, ReplyComposer, validate_library
from bot.services.outbox import Dispatcher
from bot.services.profile import ProfileService
from bot.services.reach import ReachPolicy
from bot.services.reports import ConnectionState, ReportService
from bot.services.sequences import AFTERCARE, COUNTDOWN, FOLLOWUP, SequenceComposer, SequenceService
from bot.services.welcome import WELCOME, WelcomeComposer, WelcomeService
from bot.templates import TemplateLibrary
from bot.transport.backoff import Backoff
from bot.transport.base import FriendRequest, InboundEvent, TextMessage, Transport
from bot.transport.factory import build_transport
from storage.db import Database
from storage.models import Customer, ScheduledMessage
from storage.repositories import DELIVERY_UNKNOWN, Accounts

log = logging.getLogger("salesbot")


def required_templates(config: Config) -> list[str]:
    """Templates the configuration names; ``salesbot check`` and startup insist they exist."""
    return [
        config.welcome.template,
        *(rule.template for rule in config.welcome.channels),
        config.countdown.template,
        config.digest.template,
        *(step.template for step in config.aftercare.steps),
        *(step.template for step in config.followup.steps),
    ]


def validate_setup(
    config: Config, objections: ObjectionLibrary | None = None, *, model_checked: bool = False
) -> list[str]:
    """Checks that need more than the config schema: templates, the objection library (pass it when
    already loaded), the trained model (missing or stale: a clear error; skipped when the caller
    has just loaded it), and tags named in channel rules. Returns the template names checked."""
    vocabulary = TagVocabulary(config.tags.groups)
    for number, rule in enumerate(config.welcome.channels):
        if rule.tag:
            try:
                vocabulary.parse(rule.tag)
            except TagRejected as exc:
                raise ConfigError(f"welcome.channels.{number}.tag: {exc}") from None
    library = TemplateLibrary(config.templates_path)
    if objections is None:
        objections = load_library(config)
    validate_library(objections, library)
    if not model_checked:
        load_model(config)
    names = library.validate(required_templates(config))
    for name in required_templates(config):
        if library.kind_of(name) is None:
            folders = ", ".join(f"{k}/" for k in ("welcome", "countdown", "aftercare", "followup"))
            raise TemplateError(f"{library.path_of(name)}: templates named in config must live in {folders}")
    return names


class SalesBot:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        transports: Mapping[str, Transport] | None = None,
        database_url: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.db = Database(database_url or config.database_url())
        self.templates = TemplateLibrary(config.templates_path)
        self.transports: dict[str, Transport] = (
            dict(transports)
            if transports is not None
            else {account.id: build_transport(account, config, clock) for account in config.accounts}
        )
        self.wake_listeners: list[Callable[[datetime], None]] = []
        self.messenger = Messenger(self.db, clock, self.transports)
        self.customers = CustomerService(
            self.db, clock, Pipeline(config.stages), config.pipeline.on_first_reply
        )
        self.profile = ProfileService(self.db, clock, config, self.transports)
        self.directory = ConsoleDirectory(config, self.transports)
        self._rng = rng or random.Random()
        self.sequences = SequenceService(self.db, clock, config, on_planned=self._wake)
        self.welcome = WelcomeService(
            self.db,
            clock,
            config,
            self.transports,
            self._rng,
            on_planned=self._wake,
            after_welcome=lambda session, customer, at, plan: self.sequences.plan_followups(
                session, customer, at, plan
            ),
            on_accept_interrupted=self._retry_after_reconnect,
        )
        self.objections = ObjectionService(
            self.db,
            clock,
            config,
            load_classifier(config, load_library(config)),
            self.templates,
            self.messenger,
            self._rng,
            console_of=self.directory.console_of,
            note_customer=self.directory.note_customer,
            on_planned=self._wake,
        )
        self.feedback = FeedbackService(
            self.db, clock, self.objections.classifier, resume_pushes=self.sequences.resume_pushes
        )
        self.alerts = Alerts(
            self.db,
            clock,
            self.messenger,
            self.directory.console_of,
            self.directory.note_customer,
            self._wake,
        )
        self.owed = OwedReplyNudges(self.db, clock, config, self.directory.console_of, self._wake)
        self.digests = DigestService(
            self.db, clock, config, self.templates, self.objections.library, on_planned=self._wake
        )
        self.reports = ReportService(self.db, clock, config, self.profile, self.digests)
        sequences = SequenceComposer(config, self.templates, clock)
        self.dispatcher = Dispatcher(
            self.db,
            clock,
            self.messenger,
            composers={
                WELCOME: WelcomeComposer(config, self.templates, clock),
                REPLY: ReplyComposer(self.objections),
                COUNTDOWN: sequences,
                AFTERCARE: sequences,
                FOLLOWUP: sequences,
                DIGEST: DigestComposer(self.digests, self.directory.contact_of),
                OWED: OwedReplyComposer(self.directory.console_of, config),
                ALERT: AlertComposer(self.directory.console_of),
            },
            on_unreachable=self._on_unreachable,
            on_sent=self._on_sent,
            gate=ReachPolicy(config, self._rng),
            on_undeliverable=self._on_undeliverable,
            batch_size=config.dispatch.batch_size,
        )
        self.dispatcher.available = self._connected_accounts
        self.console = ConsoleService(
            self.db,
            clock,
            config,
            self.messenger,
            self.transports,
            self.directory,
            REGISTRY,
            profile=self.profile,
            objections=self.objections,
            sequences=self.sequences,
            digests=self.digests,
            feedback=self.feedback,
        )
        self._started: list[Transport] = []
        self.unavailable: dict[str, str] = {}  # account id -> why it is not connected
        for transport in self.transports.values():
            transport.on_connection = self._on_connection
        # friend requests whose accept the connection cut off, per account (kept in memory)
        self._interrupted: defaultdict[str, list[FriendRequest]] = defaultdict(list)
        self._retries: set[asyncio.Task[None]] = set()  # interrupted friend requests, handled again
        self._late_starts: set[asyncio.Task[None]] = set()  # accounts that failed at startup, retrying
        # pyee delivers events concurrently; one customer's events are handled one at a time
        self._contact_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def start(self) -> None:
        """Validate templates, migrate, then log every account in. Fails fast with a clear error."""
        validate_setup(self.config, self.objections.library, model_checked=True)
        await self.db.migrate()
        await self._sync_accounts()
        recovered = await self.dispatcher.recover()
        if recovered.settled:
            log.warning("settled %d scheduled messages left claimed by a previous run", recovered.settled)
        for account_id, transport in self.transports.items():
            try:
                await self._start_account(account_id, transport)
            except TransportError as exc:
                # one account failing must not stop the others; its messages wait, pending
                self._not_started(account_id, exc)
        if not self._started:
            raise TransportError("; ".join(self.unavailable.values()))
        for account_id in self.unavailable:
            self._track(self._start_later(account_id, self.transports[account_id]), self._late_starts)
        for row in recovered.in_doubt:  # an account still offline gets its alert once it connects
            await self._on_undeliverable(row, row.last_error)
        await self.digests.ensure_planned()

    async def _start_account(self, account_id: str, transport: Transport) -> None:
        await transport.start(self._sink_for(account_id))
        self._started.append(transport)
        self.unavailable.pop(account_id, None)
        async with self.db.transaction() as session:
            await Accounts(session).set_self_contact(account_id, transport.self_id)
        await self.directory.resolve_consoles(account_id)

    def _not_started(self, account_id: str, error: SalesbotError) -> None:
        self.unavailable[account_id] = str(error)
        self.reports.connections[account_id] = ConnectionState(False, self.clock.now(), str(error))
        log.error("%s", error)

    async def _start_later(self, account_id: str, transport: Transport) -> None:
        """An account that could not start at startup keeps trying, with backoff, while the others
        run (an endpoint not up yet, a token being fixed)."""
        account = self.config.account(account_id)
        backoff = Backoff(initial=account.reconnect_min_seconds, maximum=account.reconnect_max_seconds)
        while True:
            await asyncio.sleep(backoff.next_delay())
            try:
                await self._start_account(account_id, transport)
            except TransportError as exc:
                self._not_started(account_id, exc)
                continue
            except SalesbotError as exc:  # e.g. its console room does not exist: retrying cannot help
                self._not_started(account_id, exc)
                return
            log.info("account %s started late; its waiting messages go out now", account_id)
            return

    @staticmethod
    def _track(work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        """Run ``work`` in the background, kept in ``tasks`` until done (:meth:`stop` cancels it)."""
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def stop(self) -> None:
        background = self._retries | self._late_starts
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background)
        for transport in reversed(self._started):
            try:
                await transport.stop()
            except Exception:
                log.exception("stopping account %s failed", transport.account_id)
        self._started.clear()
        await self.db.close()

    async def settle(self) -> None:
        """Wait for in-process transports to finish handling what they delivered (simulator, tests)."""
        while self._retries:
            await asyncio.wait(set(self._retries))
        for transport in self.transports.values():
            await transport.settle()

    async def next_due_at(self) -> datetime | None:
        await self.digests.ensure_planned()
        return await self.dispatcher.next_due_at()

    async def run_due(self) -> int:
        await self.digests.ensure_planned()
        processed = await self.dispatcher.run_due()
        await self.settle()
        return processed

    async def handle(self, account_id: str, event: InboundEvent) -> None:
        contact_id = event.contact.contact_id if isinstance(event, FriendRequest) else event.conversation_id
        async with self._contact_locks[(account_id, contact_id)]:
            await self._dispatch_event(account_id, event)

    async def _dispatch_event(self, account_id: str, event: InboundEvent) -> None:
        if isinstance(event, FriendRequest):
            log.info(
                "%s: friend request from %s (%s) hello=%r",
                account_id,
                event.contact.name,
                event.contact.contact_id,
                event.hello,
            )
            await self.welcome.on_friend_request(account_id, event)
        elif isinstance(event, TextMessage):
            await self._on_text(account_id, event)

    async def _on_text(self, account_id: str, message: TextMessage) -> None:
        if message.from_self and (await self.messenger.record_echo(account_id, message) or message.echo):
            return  # the bot's own send coming back: noted in the outgoing log, never handled again
        supervisor = self.directory.supervisor_of(account_id, message)
        if supervisor is not None:
            if await self.console.on_rep_text(account_id, message, role=supervisor):
                log.info("%s: supervisor %s: %r", account_id, supervisor, message.text)
            return
        if self.directory.is_rep(account_id, message):
            if await self.console.on_rep_text(account_id, message):
                log.info("%s: command %r", account_id, message.text)
            elif (
                message.from_self
                and not message.in_room
                and message.conversation_id != self.directory.console_of(account_id)
            ):
                log.info("%s: rep wrote to %s", account_id, message.conversation_id)
                await self.customers.record_rep_message(account_id, message)
            return
        if message.in_room:
            return
        log.info("%s: %s says %r", account_id, message.talker.name, message.text)
        customer = await self.customers.record_inbound(account_id, message)
        if customer is None or customer.id is None:
            return
        await self.sequences.customer_replied(customer.id)
        await self.owed.customer_wrote(customer, message.message_id)
        result = await self.objections.on_customer_text(account_id, customer, message)
        if result.opt_out:
            paused = await self.sequences.pause(
                customer.id, actor="customer", reason=f"opt-out: {message.text}"
            )
            await self._alert_reading(
                customer,
                message,
                f"已暂停对TA的全部自动消息（{paused} 条待发）。需要恢复请发 /resume @#{customer.id}",
                "opt_out",
            )
        elif result.opt_out_soft:
            held = await self.sequences.stop_pushes(
                customer.id, actor="customer", reason=f"asked to be pushed less: {message.text}"
            )
            await self._alert_reading(
                customer,
                message,
                f"不想被频繁催促：已停止倒计时和跟进提醒（{held} 条），售后关怀照常。"
                f"判断错了请发 /wrong 别催了 @#{customer.id}",
                "opt_out_soft",
            )

    async def _alert_reading(self, customer: Customer, message: TextMessage, what: str, kind: str) -> None:
        """One console line on what a customer's message made the bot do."""
        name = customer.remark or customer.display_name
        await self.alerts.send(
            customer.account_id,
            f"【{name} #{customer.id}】说“{message.text}”，{what}",
            key=f"{kind}:{message.message_id}",
            customer_id=customer.id,
        )

    async def _on_unreachable(self, customer_id: int, reason: str) -> None:
        if not await self.customers.mark_deleted(customer_id, reason):
            return
        card = await self.profile.card(customer_id)
        customer = card.customer
        tags = "、".join(t.value for t in card.tags) or "无"
        await self.alerts.send(
            customer.account_id,
            f"【{customer.remark or customer.display_name} #{customer_id}】已不是好友（可能删除了你），"
            "已取消对TA的全部待发消息。\n"
            f"阶段：{self.profile.pipeline.label(customer.stage)}；"
            f"来源：{customer.source_channel or '未知'}；标签：{tags}",
            key=f"deleted:{customer_id}:{customer.deleted_at}",
            customer_id=customer_id,
        )

    async def _on_undeliverable(self, row: ScheduledMessage, reason: str) -> None:
        what = kind_name(row.kind)
        unsure = DELIVERY_UNKNOWN in reason
        outcome = (
            "可能没有发出：发送时连接中断，无法确认对方是否收到。请到聊天里看一眼，需要的话手动补发。"
            if unsure
            else f"没有发出：{reason}。"
        )
        name = ""
        if row.customer_id is not None:
            async with self.db.transaction() as session:
                customer = await session.get(Customer, row.customer_id)
            assert customer is not None
            name = f"【{customer.remark or customer.display_name} #{customer.id}】的"
        await self.alerts.send(
            row.account_id,
            f"{name}{what}消息（{row.step}）{outcome}" if name else f"{what}（{row.step}）{outcome}",
            key=f"undeliverable:{row.idempotency_key}",
            customer_id=row.customer_id,
            unless_delivered=row.idempotency_key if unsure else None,
        )

    async def _on_sent(self, row: ScheduledMessage) -> None:
        if row.kind == WELCOME and row.customer_id is not None:
            self.directory.note_customer(row.account_id, row.customer_id)
        elif row.kind == REPLY:
            await self.objections.record_sent(row)

    def _connected_accounts(self) -> list[str] | None:
        """Accounts whose rows the dispatcher may claim now (None: all of them)."""
        if not self.unavailable and all(t.connected for t in self._started):
            return None
        return [t.account_id for t in self._started if t.connected]

    def _on_connection(self, account_id: str, connected: bool, reason: str) -> None:
        self.reports.connections[account_id] = ConnectionState(connected, self.clock.now(), reason)
        if connected:
            log.info("account %s: connected (%s); sending what fell due meanwhile", account_id, reason)
            self._wake(self.clock.now())
            requests, self._interrupted[account_id] = self._interrupted[account_id], []
            for request in requests:
                self._track(self.handle(account_id, request), self._retries)
        else:
            log.warning("account %s: %s; its scheduled messages wait", account_id, reason)

    def _retry_after_reconnect(self, account_id: str, request: FriendRequest) -> None:
        self._interrupted[account_id].append(request)

    def _sink_for(self, account_id: str) -> Callable[[InboundEvent], Awaitable[None]]:
        async def sink(event: InboundEvent) -> None:
            await self.handle(account_id, event)

        return sink

    def _wake(self, due: datetime) -> None:
        for listener in self.wake_listeners:
            listener(due)

    async def _sync_accounts(self) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            accounts = Accounts(session)
            for account in self.config.accounts:
                await accounts.upsert(
                    account.id,
                    account.profile.nickname,
                    account.profile.role,
                    account.profile.model_dump(mode="json"),
                    now,
                )
