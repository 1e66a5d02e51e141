"""Wires configuration, storage, templates, transports and services into one running bot.

Inbound flow: transport event -> :meth:`SalesBot.handle` -> :class:`bot.router.Router` (who is
speaking) -> one handler per speaker -> a use case in ``bot.services`` (one transaction).
Outbound flow: use case -> outbox row or :class:`Messenger` -> transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.commands import REGISTRY
from bot.config import Config
from bot.domain.kinds import Kind
from bot.domain.stages import Pipeline
from bot.domain.tags import TagRejected, TagVocabulary
from bot.errors import ConfigError, SalesbotError, TransportError
from bot.faults import crash_point
from bot.gathered_sends import GatheredSends
from bot.hooks import (
    AcceptInterrupted,
    CustomerUnreachable,
    Hooks,
    MessageSent,
    Planned,
    Undeliverable,
)
from bot.keyed_locks import KeyedLocks
from bot.objections.library import ObjectionLibrary
from bot.objections.reader import load_classifier, load_library, load_model
from bot.playbook.library import FOLDER as PLAYBOOK_FOLDER
from bot.playbook.library import PlaybookLibrary, validate_playbook
from bot.router import Router, Said, Speaker
from bot.services.accounts import AccountService
from bot.services.alerts import (
    ConsoleMessages,
    ConsoleTextComposer,
    OwedReplyComposer,
    OwedReplyNudges,
)
from bot.services.broadcasts import BroadcastComposer, BroadcastService
from bot.services.cluster import Change, Cluster
from bot.services.coach import Coach
from bot.services.console import ConsoleService
from bot.services.console_directory import ConsoleDirectory
from bot.services.customers import CustomerService
from bot.services.delivery_alerts import DeliveryAlerts, Reported
from bot.services.digest import DigestComposer, DigestService
from bot.services.feedback import FeedbackService
from bot.services.hot_leads import HotLeads, SignalComposer
from bot.services.inbound import CustomerWrote
from bot.services.koc import KocService
from bot.services.lifecycle import LifecycleService
from bot.services.lifecycle_state import LifecycleStates
from bot.services.logins import Logins
from bot.services.messenger import Messenger
from bot.services.objections import ObjectionService, ReplyComposer, validate_library
from bot.services.outbox import Dispatcher
from bot.services.profile import ProfileService
from bot.services.promises import AutoReplyComposer, Promises
from bot.services.reach import ReachPolicy
from bot.services.referrals import Referrals
from bot.services.reports import ConnectionState, ReportService
from bot.services.script_library import ScriptLibraryService
from bot.services.sequences import SequenceComposer, SequenceService
from bot.services.simulated_time import SimulatedTimeService
from bot.services.welcome import WelcomeComposer, WelcomeService
from bot.templates import TemplateLibrary
from bot.transport.backoff import Backoff
from bot.transport.base import FriendRequest, InboundEvent, LoginEvent, Transport, without_nul
from bot.transport.factory import build_transport
from storage.db import Database

log = logging.getLogger("salesbot")


def configured_templates(config: Config) -> list[tuple[str, str, str]]:
    """(config key, template name, the kind's folder) for every template the configuration names."""
    return [
        ("welcome.template", config.welcome.template, "welcome"),
        *(
            (f"welcome.channels.{n}.template", rule.template, "welcome")
            for n, rule in enumerate(config.welcome.channels)
        ),
        ("countdown.template", config.countdown.template, "countdown"),
        ("digest.template", config.digest.template, "digest"),
        *(
            (f"aftercare.steps.{n}.template", step.template, "aftercare")
            for n, step in enumerate(config.aftercare.steps)
        ),
        *(
            (f"followup.steps.{n}.template", step.template, "followup")
            for n, step in enumerate(config.followup.steps)
        ),
        *((f"hooks.rules.{n}.template", rule.template, "hooks") for n, rule in enumerate(config.hooks.rules)),
    ]


def load_playbook(config: Config) -> PlaybookLibrary:
    return PlaybookLibrary.load(config.templates_path, [s.key for s in config.stages])


def validate_verticals(config: Config) -> None:
    """Each account's ``vertical`` names a playbook file (a typo would coach with general scripts)."""
    folder = config.templates_path / PLAYBOOK_FOLDER
    known = sorted(path.stem for path in folder.glob("*.toml"))
    for number, account in enumerate(config.accounts):
        if account.vertical not in known:
            raise ConfigError(
                f"accounts.{number}.vertical: unknown vertical {account.vertical!r} "
                f"(playbooks in {folder}: {', '.join(known)})"
            )


def required_templates(config: Config) -> list[str]:
    """Templates the configuration names; ``salesbot check`` and startup insist they exist."""
    return [name for _, name, _ in configured_templates(config)]


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
    validate_playbook(load_playbook(config), objections, library)
    validate_verticals(config)
    if not model_checked:
        load_model(config)
    for key, name, folder in configured_templates(config):
        # a template of another kind gets other variables: it would fail, or say the wrong thing
        if name.split("/", 1)[0] != folder:
            raise ConfigError(
                f"{key}: {name!r} is not in the {folder}/ folder; "
                f"use a template from {config.templates_path / folder}/"
            )
    return library.validate(required_templates(config))


class SalesBot:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        transports: Mapping[str, Transport] | None = None,
        database_url: str | None = None,
        rng: random.Random | None = None,
        accounts: Collection[str] | None = None,
        cluster_clock: Clock | None = None,
    ) -> None:
        """``accounts``: run only these (``salesbot run --accounts``); ``cluster_clock``: the real
        time leases are kept on (the bot's clock may be a simulated one)."""
        self.config = config
        self.clock = clock
        self.db = Database(database_url or config.database_url())
        self.cluster = Cluster(
            self.db,
            cluster_clock or clock,
            [account.id for account in config.accounts],
            lease_seconds=config.cluster.lease_seconds,
            only=accounts,
            tz=config.tz,
        )
        self.templates = TemplateLibrary(config.templates_path)
        self.transports: dict[str, Transport] = (
            dict(transports)
            if transports is not None
            else {account.id: build_transport(account, config, clock) for account in config.accounts}
        )
        # what happened (planned, sent, delivered, unreachable...): the wiring below and the
        # runner and simulator subscribe; no service holds a callback into another
        self.hooks = Hooks()
        self.messenger = Messenger(self.db, clock, self.transports, self.hooks)
        self.customers = CustomerService(
            self.db, clock, Pipeline(config.stages), config.pipeline.on_first_reply, LifecycleStates(config)
        )
        self.profile = ProfileService(self.db, clock, config, self.transports)
        self.directory = ConsoleDirectory(config, self.transports)
        self._rng = rng or random.Random()
        self.hooks.on(AcceptInterrupted, self._retry_after_reconnect)
        self.hooks.on(MessageSent, self._on_sent)
        self.hooks.on(CustomerUnreachable, self._on_unreachable)
        self.hooks.on(Undeliverable, self._on_undeliverable)
        self.sequences = SequenceService(self.db, clock, config, hooks=self.hooks)
        self.welcome = WelcomeService(
            self.db,
            clock,
            config,
            self.transports,
            self._rng,
            hooks=self.hooks,
            followups=self.sequences,
        )
        self.objections = ObjectionService(
            self.db,
            clock,
            config,
            load_classifier(config, load_library(config)),
            self.templates,
            self._rng,
            hooks=self.hooks,
            playbook=load_playbook(config),
        )
        self.coach = Coach(
            self.db, clock, config, self.objections, self.objections.playbook, hooks=self.hooks
        )
        self.feedback = FeedbackService(self.db, clock, self.objections.classifier, pushes=self.sequences)
        self.console_messages = ConsoleMessages(clock)
        self.accounts = AccountService(self.db, clock, config)
        self.simulated_time = SimulatedTimeService(self.db, clock, config)
        self.delivery_alerts = DeliveryAlerts(
            self.db, self.customers, self.console_messages, Pipeline(config.stages)
        )
        self.koc = KocService(self.db, clock, config)
        self.lifecycle = LifecycleService(
            self.db, clock, config, self.console_messages, self.objections, self.objections.playbook
        )
        self.customer_wrote = CustomerWrote(
            self.db,
            self.customers,
            self.sequences,
            self.objections,
            OwedReplyNudges(clock, config),
            self.console_messages,
            Promises(clock, config),
            HotLeads(clock, config, self.sequences, self.objections),
            Referrals(clock, config, self.objections, self.koc),
            self.coach,
        )
        self.digests = DigestService(
            self.db, clock, config, self.templates, self.objections.library, hooks=self.hooks
        )
        self.scripts = ScriptLibraryService(self.db, clock, config, self.objections)
        self.reports = ReportService(self.db, clock, config, self.profile, self.digests, self.scripts)
        self.broadcasts = BroadcastService(self.db, clock, config, self.templates, self.hooks)
        sequences = SequenceComposer(config, self.templates, clock)
        console_text = ConsoleTextComposer(self.directory.console_of, self._supervisor_chat)
        self.logins = Logins(self.db, clock, config)
        self.reports.logins = self.logins.states
        self.dispatcher = Dispatcher(
            self.db,
            clock,
            self.messenger,
            composers={
                Kind.WELCOME: WelcomeComposer(config, self.templates, clock),
                Kind.REPLY: ReplyComposer(self.objections),
                Kind.COUNTDOWN: sequences,
                Kind.AFTERCARE: sequences,
                Kind.FOLLOWUP: sequences,
                Kind.DIGEST: DigestComposer(self.digests, self.directory.contact_of),
                Kind.OWED: OwedReplyComposer(self.directory.console_of),
                Kind.ALERT: console_text,
                Kind.SUGGESTION: console_text,
                Kind.REACTIVATION: console_text,
                Kind.SIGNAL: SignalComposer(self.directory.console_of),
                Kind.COACH: console_text,
                Kind.AUTO_REPLY: AutoReplyComposer(config, self.templates, clock),
                Kind.BROADCAST: BroadcastComposer(config, self.templates),
            },
            hooks=self.hooks,
            gate=ReachPolicy(config, self._rng),
            batch_size=config.dispatch.batch_size,
            doubts=self.delivery_alerts,
            max_chars=config.digest.max_chars,
        )
        self.dispatcher.available = self._connected_accounts
        self.dispatcher.lease = self.cluster.claim_check
        self.dispatcher.lease_token = self.cluster.token
        self.dispatcher.holds = self.cluster.holds
        # what a customer's message planned to send at once (a console card, a reply): sent by its
        # handler, or gathered with the other messages' of a short window (bot/gathered_sends.py;
        # a running process sets it up, bot/runner.py)
        self.gathered: GatheredSends | None = None
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
            koc=self.koc,
            coach=self.coach,
            scripts=self.scripts,
            broadcasts=self.broadcasts,
        )
        self._started: list[Transport] = []
        self.unavailable: dict[str, str] = {}  # account id -> why it is not connected
        for transport in self.transports.values():
            transport.on_connection = self._on_connection
            transport.on_login = self._on_login
        # friend requests whose accept the connection cut off, per account (kept in memory)
        self._interrupted: defaultdict[str, list[FriendRequest]] = defaultdict(list)
        self._retries: set[asyncio.Task[None]] = set()  # interrupted friend requests, handled again
        self._late_starts: set[asyncio.Task[None]] = set()  # accounts that failed at startup, retrying
        self.router = Router(
            is_echo=self.messenger.record_echo,
            supervisor_of=self.directory.supervisor_of,
            is_rep=self.directory.is_rep,
            on_friend_request=self._on_friend_request,
            handlers={
                Speaker.SUPERVISOR: self._on_supervisor,
                Speaker.REP: self._on_rep,
                Speaker.CUSTOMER: self._on_customer,
            },
        )
        # pyee delivers events concurrently; one customer's events are handled one at a time
        self._contact_locks = KeyedLocks()
        self._rebalancing = asyncio.Lock()

    async def start(self) -> None:
        """Validate templates, migrate, then log every account in. Fails fast with a clear error."""
        await self.prepare()
        await self.log_in()

    async def prepare(self, *, migrate_apart: bool = False) -> None:
        """Everything before logging in: the web UI can serve from here on (a QR code to scan).
        ``migrate_apart``: a schema to create or change is migrated by a child process (``salesbot
        run``: the long-running bot keeps none of alembic in memory)."""
        validate_setup(self.config, self.objections.library, model_checked=True)
        await self.db.migrate(apart=migrate_apart)
        # SQLite: refuses a second process; PostgreSQL: takes this process's share of the accounts
        await self.cluster.join()
        # logins may take longer than the lease: keep it renewed until the heartbeat timer runs
        started = asyncio.Event()
        keepalive = asyncio.create_task(self._renew_until(started))
        try:
            await self._start_joined()
        finally:
            started.set()  # not cancel(): a renewal cut off mid-transaction could leave it open
            await keepalive

    async def _renew_until(self, done: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.config.cluster.lease_seconds / 3)
                return
            try:
                await self.cluster.renew()
            except Exception:
                log.exception("renewing the leases while starting failed; retrying")

    async def _start_joined(self) -> None:
        await self.accounts.sync()
        await self.simulated_time.on_start()  # a fast-forwarded database is not for real WeChat
        recovered = await self.dispatcher.recover(self.cluster.ownership(), fenced=self.cluster.shared)
        if recovered.settled:  # the rep's alerts for sends in doubt are planned with them
            log.warning(
                "settled %d scheduled messages left claimed by a previous run (%d in doubt)",
                recovered.settled,
                len(recovered.in_doubt),
            )

    async def log_in(self) -> None:
        """Start every account this process owns; one that fails keeps retrying in the background."""
        for account_id, transport in self.transports.items():
            if not self.cluster.owns(account_id):
                continue  # another process runs it
            try:
                await self._start_account(account_id, transport)
            except TransportError as exc:
                # one account failing must not stop the others; its messages wait, pending
                self._not_started(account_id, exc)
        if not self._started and self.unavailable:
            raise TransportError("; ".join(self.unavailable.values()))
        if not self.cluster.owns_any():
            log.info("every account is owned by another process: standing by to take over")
        for account_id in self.unavailable:
            self._track(self._start_later(account_id, self.transports[account_id]), self._late_starts)
        await self.digests.ensure_planned()

    async def _start_account(self, account_id: str, transport: Transport) -> None:
        await transport.start(self._sink_for(account_id))
        self._started.append(transport)
        self.unavailable.pop(account_id, None)
        await self.accounts.logged_in(account_id, transport.self_id)
        await self.directory.resolve_consoles(account_id)
        # friend requests accepted on the platform just before a kill, never recorded: finish them
        await self.welcome.reconcile(account_id)

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
            if not self.cluster.owns(account_id):  # handed over or lost meanwhile: not ours to start
                self.unavailable.pop(account_id, None)
                return
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

    async def _take_up(self, account_id: str) -> None:
        """Start an account just taken over; on failure keep trying like a late start. One lost
        again while it logged in is stopped."""
        transport = self.transports[account_id]
        try:
            await self._start_account(account_id, transport)
        except TransportError as exc:
            self._not_started(account_id, exc)
            await self._start_later(account_id, transport)
        except SalesbotError as exc:  # e.g. its console room does not exist: retrying cannot help
            self._not_started(account_id, exc)
            return
        except Exception:
            log.exception("account %s: starting it after taking it over failed", account_id)
            return
        if not self.cluster.owns(account_id):
            await self._stop_account(account_id)

    @staticmethod
    def _track(work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        """Run ``work`` in the background, kept in ``tasks`` until done (:meth:`stop` cancels it)."""
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def readiness(self) -> str:
        """For ``/readyz``: "" when the database answers and this process owns an account (or
        has nothing to own: every account has a live owner); else why not."""
        return await self.db.ping(within=3.0) or self.cluster.readiness()

    async def rebalance(self) -> Change:
        """The heartbeat: renew this process's leases; stop the transports of accounts it lost,
        recover and start those it took (a dead process's), so what fell due meanwhile goes out."""
        async with self._rebalancing:  # the timer and a dispatch may both ask
            return await self._rebalance()

    async def _rebalance(self) -> Change:
        change = await self.cluster.heartbeat()
        for account_id in change.lost:
            await self._stop_account(account_id)
        if change.gained:
            recovered = await self.dispatcher.recover(change.gained, fenced=self.cluster.shared)
            if recovered.settled:
                log.warning(
                    "settled %d scheduled messages a dead process left claimed (%d in doubt)",
                    recovered.settled,
                    len(recovered.in_doubt),
                )
        for account_id in sorted(change.gained):
            log.info("account %s: taken over; connecting", account_id)
            # in the background: a login can take up to login_timeout_seconds, and a heartbeat
            # waiting for it would let this process's other leases lapse meanwhile
            self._track(self._take_up(account_id), self._late_starts)
        if change.surplus:
            await self._hand_over(change.surplus)
        if change.gained:
            await self.hooks.emit(Planned(self.clock.now()))
        return change

    async def _hand_over(self, accounts: frozenset[str]) -> None:
        """Give accounts beyond the fair share to a process that joined: stop claiming their rows,
        let the batch in hand finish, log them out, then release the leases."""
        log.info("handing account(s) %s over to another process (fair share)", ", ".join(sorted(accounts)))
        self.cluster.let_go(accounts)
        await self.dispatcher.quiesce()
        for account_id in accounts:
            await self._stop_account(account_id)
        await self.cluster.release(accounts)

    async def _stop_account(self, account_id: str) -> None:
        transport = self.transports[account_id]
        if transport in self._started:
            self._started.remove(transport)
            try:
                await transport.stop()
            except Exception:
                log.exception("stopping account %s failed", account_id)
        self.unavailable.pop(account_id, None)

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
        try:
            await self.cluster.leave()  # another process may take the accounts now
        except Exception:
            log.exception("releasing this process's accounts failed (they expire on their own)")
        await self.db.close()

    async def settle(self) -> None:
        """Wait for in-process transports to finish handling what they delivered, and for what the
        handlers left to send at once (gathered: sent now) to go out, once: rows the sends'
        echoes plan are not waited for (the simulator, the tests, the end of every dispatch)."""
        while self._retries:
            await asyncio.wait(set(self._retries))
        for transport in self.transports.values():
            await transport.settle()
        # the rows waiting now, not later ones (a settle under load must end)
        if self.gathered is not None and await self.gathered.flush():
            for transport in self.transports.values():
                await transport.settle()  # the sends' echoes

    async def next_due_at(self) -> datetime | None:
        await self.digests.ensure_planned()
        due = await self.dispatcher.next_due_at()
        sweep = await self.lifecycle.next_sweep_at()  # not a row: a daily sweep that may move someone
        return min((at for at in (due, sweep) if at is not None), default=None)

    async def _renew_if_due(self) -> None:
        """Renew the leases before a dispatch when a heartbeat is due: claims re-check them."""
        if self.cluster.shared and self.cluster.renewal_due():
            await self.rebalance()

    async def send_at_once(
        self, row_ids: Collection[int], *, renew: bool = True, despite_stop: bool = False
    ) -> None:
        """Send these planned rows now (what customers' messages planned), none other, after
        renewing the leases when a heartbeat is due (``renew``: not while stopping, when a
        process takes no account over). ``despite_stop``: see ``Dispatcher.run_due``."""
        # "this customer" stays the rep's own choice: a report never moves it
        if renew:
            await self._renew_if_due()
        await self.dispatcher.run_due(only=row_ids, despite_stop=despite_stop)

    async def run_due(self) -> int:
        await self._renew_if_due()
        await self.digests.ensure_planned()
        await self.lifecycle.sweep_if_due()  # its cards are due now: the dispatch below sends them
        processed = await self.dispatcher.run_due()
        await self.settle()
        return processed

    async def handle(self, account_id: str, event: InboundEvent) -> None:
        event = without_nul(event)
        contact_id = event.contact.contact_id if isinstance(event, FriendRequest) else event.conversation_id
        async with self._contact_locks.hold((account_id, contact_id)):
            try:
                await self.router.route(account_id, event)
            except IntegrityError:
                if not self.cluster.shared:
                    raise  # one process: a duplicate key is a bug, not a race
                # the account changed hands while this process still heard its events: the other
                # process stored this one first (unique keys keep it once); nothing is lost
                log.warning(
                    "account %s: an event from %s was already handled by another process "
                    "(the account is changing hands); skipped here",
                    account_id,
                    contact_id,
                )

    # -- one handler per speaker (the router decides who is speaking) -------------------------------

    async def _on_friend_request(self, account_id: str, request: FriendRequest) -> None:
        log.info(
            "%s: friend request from %s (%s) hello=%r",
            account_id,
            request.contact.name,
            request.contact.contact_id,
            request.hello,
        )
        await self.welcome.on_friend_request(account_id, request)

    async def _on_supervisor(self, said: Said) -> None:
        assert said.supervisor is not None
        if await self.console.on_rep_text(said.account_id, said.message, role=said.supervisor):
            log.info("%s: supervisor %s: %r", said.account_id, said.supervisor, said.message.text)

    async def _on_rep(self, said: Said) -> None:
        account_id, message = said.account_id, said.message
        if await self.console.on_rep_text(account_id, message):
            log.info("%s: command %r", account_id, message.text)
        elif (
            message.from_self
            and not message.in_room
            and message.conversation_id != self.directory.console_of(account_id)
        ):
            log.info("%s: rep wrote to %s", account_id, message.conversation_id)
            await self.customers.record_rep_message(account_id, message)

    async def _on_customer(self, said: Said) -> None:
        account_id, message = said.account_id, said.message
        log.info("%s: %s says %r", account_id, message.talker.name, message.text)
        handled = await self.customer_wrote(account_id, message)
        if handled is None:
            return
        crash_point("inbound.committed")  # committed; on SQLite usually a group commit, not yet flushed
        if handled.send_now and self.gathered is not None:
            self.gathered.add(handled.send_now)
        elif handled.send_now:
            await self.send_at_once(handled.send_now)
        if handled.wake_at is not None:
            await self.hooks.emit(Planned(handled.wake_at))

    # -- what the dispatcher reports ------------------------------------------------------------

    async def _on_unreachable(self, event: CustomerUnreachable) -> None:
        await self._send_report(await self.delivery_alerts.customer_unreachable(event))

    async def _on_undeliverable(self, event: Undeliverable) -> None:
        await self._send_report(await self.delivery_alerts.undeliverable(event))

    async def _send_report(self, reported: Reported | None) -> None:
        if reported is None:
            return
        if reported.alert_id is not None:
            await self.dispatcher.run_due(only=[reported.alert_id])

    async def _on_sent(self, event: MessageSent) -> None:
        row = event.row
        if row.kind == Kind.REPLY:
            await self.objections.record_sent(row)

    def _connected_accounts(self) -> list[str] | None:
        """Accounts whose rows the dispatcher may claim now (None: all of them): connected, and
        owned by this process (PostgreSQL: its leases)."""
        if not self.cluster.shared and not self.unavailable and all(t.connected for t in self._started):
            return None
        return [t.account_id for t in self._started if t.connected and self.cluster.owns(t.account_id)]

    def _on_connection(self, account_id: str, connected: bool, reason: str) -> None:
        self.reports.connections[account_id] = ConnectionState(connected, self.clock.now(), reason)
        if connected:
            log.info("account %s: connected (%s); sending what fell due meanwhile", account_id, reason)
            self._track(self.hooks.emit(Planned(self.clock.now())), self._retries)
            requests, self._interrupted[account_id] = self._interrupted[account_id], []
            for request in requests:
                self._track(self.handle(account_id, request), self._retries)
        else:
            log.warning("account %s: %s; its scheduled messages wait", account_id, reason)

    def _supervisor_chat(self, name: str) -> str:
        supervisor = self.config.supervisor(name)
        return self.directory.contact_of(supervisor.account, supervisor.contact)

    def _on_login(self, account_id: str, event: LoginEvent) -> None:
        """A QR code to scan, a scan, a login or a logout: shown on the dashboard; an outage is
        told to the account's supervisors in chat (their alert waits if it must)."""
        lost = self.logins.changed(account_id, event)
        if lost is not None:
            self._track(self._tell_supervisors(account_id, lost), self._retries)

    async def _tell_supervisors(self, account_id: str, lost: Any) -> None:
        try:
            planned = await self.logins.alert_supervisors(account_id, lost)
            if planned:
                await self.dispatcher.run_due(only=planned)
        except Exception:
            log.exception("account %s: telling the supervisors about the logout failed", account_id)

    def _retry_after_reconnect(self, interrupted: AcceptInterrupted) -> None:
        self._interrupted[interrupted.account_id].append(interrupted.request)

    def _sink_for(self, account_id: str) -> Callable[[InboundEvent], Awaitable[None]]:
        async def sink(event: InboundEvent) -> None:
            await self.handle(account_id, event)

        return sink
