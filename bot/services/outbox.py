"""Sends planned messages when they fall due: claim atomically, re-check, render, reserve, send,
mark; in batches when many are due (see :meth:`Dispatcher.run_due`).

Text is rendered at send time, so a template fix or a profile change applies to what is still
pending. Claiming is a single atomic update, so two dispatchers never send the same row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.domain.kinds import AUTOMATED_KINDS, CONSOLE_KINDS, PUSH_KINDS, Kind
from bot.domain.limits import MAX_PARTS, split_message
from bot.errors import TemplateError
from bot.faults import pause_point
from bot.hooks import CustomerUnreachable, Hooks, MessageSent, Undeliverable
from bot.media import LABELS, Attachment
from bot.services.messenger import Delivery, Messenger, Reservation, SendResult, Sent, Transmission
from bot.services.reach import SEND, Memo, Verdict
from storage.db import Database, RelaxedWriter
from storage.models import Customer, OutgoingMessage, ScheduledMessage
from storage.queries import ATTACHMENT_KEY_SUFFIX
from storage.queries import outbox as outbox_queries
from storage.repositories import DELIVERY_UNKNOWN, Customers, Events, Outbox, OutgoingLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Composed:
    conversation_id: str
    text: str
    # a long message split for chat: each part is sent under its own idempotency key
    parts: tuple[str, ...] = ()
    # the outgoing kind when it differs from the row's (an owed-reply nudge goes out as an alert)
    kind: str | None = None
    # sent after the text as one more part (its own key: text and attachment go out once each)
    attachment: Attachment | None = None

    def texts(self) -> tuple[str, ...]:
        return self.parts or (self.text,)

    def sends(self) -> int:
        """How many messages this is: the text's parts, plus the attachment."""
        return len(self.texts()) + (self.attachment is not None)

    def keyed(self) -> bool:
        """Whether each send has a part key (``<row key>:<n>``) rather than the row's own key."""
        return bool(self.parts) or self.attachment is not None


class Composer(Protocol):
    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        """Render the message, or return None when it is no longer wanted. ``customer`` is None only
        for rows addressed to no customer (a supervisor's digest)."""
        ...


class Gate(Protocol):
    async def verdict(
        self,
        session: AsyncSession,
        row: ScheduledMessage,
        now: datetime,
        memo: Memo | None = None,
        *,
        least_gap: bool = False,
    ) -> Verdict:
        """Whether ``row`` may go out now; ``memo``: shared by one batch's verdicts.
        ``least_gap``: the row waited for a slot its gap was drawn for: ask only the least gap."""
        ...

    def spacing(self, stream: str) -> tuple[timedelta, timedelta]:
        """The least and most time the gate puts between two sends of one account's paced
        ``stream`` (see :func:`_paced_stream`)."""
        ...

    def gap(self, stream: str) -> timedelta:
        """A gap drawn from :meth:`spacing` (human-like: not always the same)."""
        ...


class DoubtReporter(Protocol):
    async def in_doubt(
        self, session: AsyncSession, row: ScheduledMessage, reason: str, unsent: str = ""
    ) -> None:
        """Plan the rep's "check the chat" alert for ``row`` in ``session`` (recovery's transaction);
        ``unsent``: the part in doubt when the earlier parts went out."""
        ...


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        messenger: Messenger,
        composers: Mapping[str, Composer],
        hooks: Hooks | None = None,
        gate: Gate | None = None,
        batch_size: int = 16,
        doubts: DoubtReporter | None = None,
        max_chars: int | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.messenger = messenger
        self.composers = composers
        # MessageSent, CustomerUnreachable and Undeliverable are emitted after their commit
        self.hooks = hooks or Hooks()
        self.gate = gate
        # pacing's queue, in this process (the account's lease keeps its rows here): (account,
        # paced stream) -> the latest slot given to it; held-back row id -> its slot (see _slot)
        self._tail: dict[tuple[str, str], datetime] = {}
        self._slotted: dict[int, datetime] = {}
        self.batch_size = batch_size
        self.doubts = doubts
        # longest chat message: a longer one goes out in parts (at most MAX_PARTS), whatever composed it
        self.max_chars = max_chars
        # one dispatch loop at a time in this process (startup, poll, wake-up and a console row sent
        # right after an inbound event would otherwise overlap): a kill leaves one send in doubt
        self._single_flight = asyncio.Lock()
        self._dispatching: asyncio.Task[object] | None = None  # the task running the loop
        # attempt groups: "<durability epoch>/<host>/<pid>/<batch>". Recovery trusts the order of a
        # batch only for this epoch (no relaxed commit lost) and host, once the process is gone
        self._host_groups = f"{db.durability_epoch}/{socket.gethostname()}/"
        # accounts whose transport is connected; None: all. Rows of other accounts wait, pending.
        self.available: Callable[[], Collection[str] | None] = lambda: None
        # (lease owner, real time now) when accounts are leased (PostgreSQL, several processes):
        # claims re-check the lease in the database; None: no leases (SQLite)
        self.lease: Callable[[], tuple[str, datetime] | None] = lambda: None
        # the fence (see Cluster): the lease an account's send is reserved under (its token), and
        # whether this process still holds that same lease, asked right before the send; a send
        # whose lease moved is left to the new owner
        self.lease_token: Callable[[str], datetime | None] = _no_token
        self.holds: Callable[[str, datetime | None], Awaitable[bool]] = _always
        # set when the process is stopping: finish the row in hand, claim no more (unless a
        # dispatch runs despite_stop: what customers' messages gathered, bot/gathered_sends.py)
        self.stopping = False

    async def quiesce(self) -> None:
        """Wait until no dispatch loop runs here (rows it claimed are sent or released): what an
        account handed to another process needs before its lease goes."""
        if self._dispatching is asyncio.current_task():
            return
        async with self._single_flight:
            pass

    async def next_due_at(self) -> datetime | None:
        async with self.db.transaction() as session:
            return await Outbox(session).next_due_at(self.available())

    async def recover(self, accounts: Collection[str] | None = None, *, fenced: bool = False) -> Recovery:
        """Settle rows a crashed process left ``claimed``. Never re-sends blindly: the outgoing log
        says whether each send started, finished, or (in a batch, on the same boot) was never
        attempted; sends that went out get the contact and ``message_out`` their batch did not
        live to record. Returns how many rows were settled and those left in doubt (the rep
        should check the chat). ``accounts``: only rows of these (the accounts this process just
        took from a dead one; a live process's claims are never touched); None: every row.
        ``fenced``: the accounts' previous holders check their lease before every send
        (:meth:`Dispatcher.holds`), so a holder paused past its lease, alive or on another host,
        starts no send of these accounts any more: only the first unfinished send of each of its
        batches may be under way (in doubt), the later ones go back to pending."""
        now = self.clock.now()
        settled = 0
        in_doubt: list[ScheduledMessage] = []
        async with self.db.transaction() as session:
            rows = await outbox_queries.claimed(session, accounts)
            outgoing = OutgoingLog(session)
            # a batch's sends go out one at a time, each outcome recorded before the next send:
            # unless the machine crashed (relaxed commits lost), only the first unfinished send
            # of a batch was under way; the ones after it were never attempted
            if fenced and accounts is not None:  # any host: the fence holds wherever it runs
                groups = await outgoing.never_attempted(f"{self.db.durability_epoch}/", accounts)
            else:
                groups = await outgoing.never_attempted(self._host_groups)
            for group, untried in groups.items():
                if (fenced and accounts is not None) or _process_gone(group):
                    for send in untried:
                        await outgoing.fail(send, "never attempted: the process stopped before this send")
            for row in rows:
                sent = await outgoing.by_key(row.idempotency_key)
                unsent = ""
                if sent is None:  # a message in parts (long text, attachment)
                    parts = await _parts(outgoing, row.idempotency_key)
                    for part in parts:  # went out, but the batch did not live to record it
                        if part.status == "sent" and part.sent_at is None:
                            delivered = SendResult(Delivery.SENT)
                            await self.messenger.record_contact(session, _reservation_of(part), delivered)
                    # the part under way, if any (the rest is simply tried again: duplicates are skipped)
                    sent = next((p for p in parts if p.status not in ("sent", "failed")), None)
                    if sent is not None and sent is not parts[0]:  # the earlier parts went out
                        unsent = _unsent_logged(sent)
                if sent is None or sent.status == "failed":
                    row.status = "pending"  # never reached the platform: safe to try again
                elif sent.status == "sent":
                    row.status = "sent"
                    if sent.attempt_group is not None:  # the batch's own commit did not happen
                        reservation = _reservation_of(sent)
                        await self.messenger.record_contact(session, reservation, SendResult(Delivery.SENT))
                else:  # "sending": the platform may or may not have it. At most once: do not retry.
                    reason = f"interrupted while sending; {DELIVERY_UNKNOWN}"
                    unsure = await outgoing.unknown(sent.id or 0, reason)
                    if unsure is not None and unsure.status == "sent":  # its echo came back
                        row.status = "sent"
                    else:
                        row.status, row.last_error = "failed", reason
                        in_doubt.append(row)
                        if self.doubts is not None:  # planned with the doubt: never lost to a failed login
                            await self.doubts.in_doubt(session, row, reason, unsent)
                row.updated_at = now
                settled += 1
        return Recovery(settled, in_doubt)

    async def run_due(self, only: Collection[int] | None = None, *, despite_stop: bool = False) -> int:
        """Send everything due now (or only the rows ``only`` names, when they are due), earliest
        first. Returns how many rows were processed. ``despite_stop``: :attr:`stopping` does not
        halt it (what customers' messages gathered to send at once: a few named rows).

        Group commit, without widening a crash's doubt. One durable transaction writes what
        the batch just sent achieved (contact, events, each row's status) and claims, checks,
        renders and reserves the next batch: up to ``batch_size`` rows, fewer when fewer are
        due. The batch then goes out one message at a time; before the next send starts, the
        outcome of the last one is committed to its outgoing-log row in a relaxed transaction
        (no wait for the disk; it survives the process being killed). So nothing is sent
        twice, and after a crash :meth:`recover` knows every outcome but the one send that was
        under way; after a machine crash, whose relaxed commits may be lost, it treats every
        unfinished send of the batch as in doubt."""
        if self.db.in_unit():  # a send must never go out before the change that justifies it commits
            raise RuntimeError("run_due cannot run inside a unit of work")
        if self._dispatching is asyncio.current_task():
            # called back from this loop (an alert a send outcome raised): the rows it planned are
            # due now, so the running loop claims them on its next round
            return 0
        async with self._single_flight:
            self._dispatching = asyncio.current_task()
            try:
                return await self._run_due(only, despite_stop)
            finally:
                self._dispatching = None

    async def _run_due(self, only: Collection[int] | None, despite_stop: bool = False) -> int:
        processed = 0
        in_flight: list[_InFlight] = []
        # ``only``: the named rows not claimed yet; once none is left, a round only settles
        unclaimed = None if only is None else set(only)
        while True:
            after_commit: list[Callable[[], Awaitable[object]]] = []
            claimed: list[ScheduledMessage] = []
            steps: list[_Step] = []
            nexts: list[_Next] = []
            current: ScheduledMessage | None = None  # the row being prepared, should it fail
            group = f"{self._host_groups}{os.getpid()}/{uuid.uuid4().hex}"
            # a round that claims and reserves nothing and only writes down sends that went out in
            # full is part of their outcome: relaxed like it (after a machine crash recovery finds
            # the rest in the outgoing log); a round that reserves is disk-flushed before any send
            halted = self.stopping and not despite_stop
            settle_only = (
                (halted or unclaimed == set())
                and bool(in_flight)
                and all(_went_out(item) for item in in_flight)
            )
            try:
                async with (
                    self.db.relaxed_transaction(inline=True)
                    if settle_only
                    else self.db.transaction(inline=True) as session
                ):
                    nexts = await self._settle_all(session, in_flight, after_commit)
                    room = self.batch_size - len(nexts)
                    if room > 0 and not halted and unclaimed != set():
                        claimed = await Outbox(session).claim_due(
                            self.clock.now(), self.available(), room, unclaimed, self.lease()
                        )
                        if unclaimed is not None:
                            unclaimed -= {row.id for row in claimed}
                        customers = await Customers(session).get_many(
                            {row.customer_id for row in claimed if row.customer_id is not None}
                        )
                        # (account, paced stream) with a send in this batch: automated kinds, welcomes
                        sending: set[tuple[str, str]] = set()
                        memo: Memo = {}  # what the gate read for this batch
                        # rows that waited for their slot go before rows just due (stable)
                        claimed.sort(key=lambda row: (row.id or 0) not in self._slotted)
                        for current in claimed:
                            customer = customers.get(current.customer_id or 0)
                            send = await self._prepare(
                                session, current, customer, after_commit, sending, memo
                            )
                            if send is not None:
                                nexts.append(send)
                        current = None
                    steps = await self._reserve(session, nexts, group)
            except Exception as exc:
                if current is None and not in_flight:
                    raise
                log.exception("dispatching scheduled message %s failed", current.id if current else None)
                after_commit, claimed = [], [current] if current else []
                async with self.db.transaction() as session:  # what went out is written down anyway
                    steps = await self._reserve(
                        session, await self._settle_all(session, in_flight, after_commit), group
                    )
                    if current is not None:
                        error = f"internal error: {exc}"
                        await Outbox(session).mark(current.id or 0, "failed", self.clock.now(), error)
            await _run_effects(after_commit)
            processed += len(claimed)
            # effects may have planned more rows, which only a run for every due row claims
            if not steps and not claimed and (not after_commit or unclaimed is not None):
                return processed
            in_flight = await self._send_batch(steps, group, despite_stop=despite_stop)

    async def _send_batch(self, steps: list[_Step], group: str, *, despite_stop: bool) -> list[_InFlight]:
        """Send a reserved batch in order, recording each outcome before the next send starts.
        Once an account proves offline (or the process is stopping, unless ``despite_stop``) its
        remaining reservations are released untried: their rows go back to pending. Before each
        send the account's lease is checked (the fence): one lost while this process was paused
        sends nothing more."""
        pause_point("dispatch.reserved")
        offline: set[str] = set()
        fenced: set[str] = set()
        in_flight: list[_InFlight] = []
        if not steps:
            return in_flight
        async with self.db.relaxed_writes() as writer:
            for step in steps:
                item = await self._send_one(step, group, writer, offline, fenced, despite_stop)
                if item is not None:
                    in_flight.append(item)
        return in_flight

    async def _send_one(
        self,
        step: _Step,
        group: str,
        writer: RelaxedWriter,
        offline: set[str],
        fenced: set[str],
        despite_stop: bool,
    ) -> _InFlight | None:
        """One send of a batch and its outcome, committed (relaxed); None when fenced off."""
        account_id = step.row.account_id
        if account_id in fenced or not await self.holds(account_id, step.lease):
            # another process took the account over while this one was paused: nothing is
            # sent, and the row is the new owner's to settle (its recovery); the outgoing-log
            # row says "never attempted" unless that recovery got to it first
            fenced.add(account_id)
            if step.reservation.outgoing_id is not None:
                async with self.db.relaxed_transaction() as session:
                    await OutgoingLog(session).fenced(
                        step.reservation.outgoing_id, group, "never attempted: the account's lease moved"
                    )
            return None
        if self.stopping and not despite_stop:
            transmission = Transmission(Delivery.NOT_CONNECTED, "stopping before this send")
        elif step.row.account_id in offline:
            transmission = Transmission(Delivery.NOT_CONNECTED, "the account went offline")
        else:
            transmission = await self.messenger.transmit(step.reservation)
            if transmission.delivery is Delivery.NOT_CONNECTED:
                offline.add(step.row.account_id)
        result = await self.messenger.record_outcome_relaxed(writer, step.reservation, transmission)
        return _InFlight(step, result)

    async def _settle_all(
        self,
        session: AsyncSession,
        in_flight: list[_InFlight],
        after_commit: list[Callable[[], Awaitable[object]]],
    ) -> list[_Next]:
        """Write what the batch just sent achieved; returns the next parts of long messages."""
        sent = await self.messenger.record_contacts(
            session, [(i.step.reservation, i.result) for i in in_flight]
        )
        after_commit.extend(_announce(self.messenger, s) for s in sent)
        done: list[int] = []  # rows whose every part went out
        parts = []
        for item in in_flight:
            part = await self._settle(session, item.step, item.result, after_commit, done)
            if part is not None:
                parts.append(part)
        await Outbox(session).mark_many(done, "sent", self.clock.now())
        return parts

    async def _prepare(
        self,
        session: AsyncSession,
        row: ScheduledMessage,
        customer: Customer | None,
        after_commit: list[Callable[[], Awaitable[object]]],
        sending: set[tuple[str, str]],
        memo: Memo,
    ) -> _Next | None:
        """Decide what to do with a claimed row: its first send when it is to go out (reserved
        with the batch's others). Rows that are not sent are marked here, in the same transaction
        as their claim."""
        now = self.clock.now()
        outbox = Outbox(session)
        stream = _paced_stream(row.kind)
        paced = None if stream is None or not self._spaced(stream) else (row.account_id, stream)
        slotted = self._slotted.pop(row.id or 0, None) is not None
        if paced is not None and paced in sending:
            # the gate cannot see this batch's reservations: one paced send per account per
            # batch; this row joins the queue (see _slot)
            await self._hold(session, after_commit, row, self._slot(paced, now), "pacing", paced)
            return None
        if now > row.not_after:
            await outbox.mark(row.id or 0, "expired", now, "not sent before not_after")
            return None
        composer = self.composers.get(row.kind)
        if composer is None:
            await outbox.mark(row.id or 0, "failed", now, f"no composer for kind {row.kind!r}")
            return None
        if customer is not None and customer.paused_at is not None and row.kind in AUTOMATED_KINDS:
            await outbox.mark(row.id or 0, "paused", now, "automation paused for this customer")
            return None
        if customer is not None and customer.pushes_stopped_at is not None and row.kind in PUSH_KINDS:
            await outbox.mark(row.id or 0, "paused", now, "the customer asked to be pushed less")
            return None
        verdict = (
            SEND if self.gate is None else await self.gate.verdict(session, row, now, memo, least_gap=slotted)
        )
        if not verdict.send:
            assert verdict.not_before is not None
            # rows held back together (a burst, the end of quiet hours) would all be told the
            # same time: they queue instead
            queued = paced if paced is not None and verdict.queue else None
            until = verdict.not_before if queued is None else self._slot(queued, verdict.not_before)
            await self._hold(session, after_commit, row, until, verdict.reason, queued)
            return None
        if row.customer_id is not None and (customer is None or customer.deleted_at is not None):
            composed = None
        else:
            try:
                composed = await composer.compose(row, customer, session)
            except TemplateError as exc:
                await self._fail(session, after_commit, row, str(exc), alert=True)
                return None
        if composed is None:
            await outbox.mark(row.id or 0, "cancelled", now, "no longer wanted")
            return None
        if paced is not None:
            sending.add(paced)
            self._tail[paced] = max(now, self._tail.get(paced, now))
        if not composed.parts and self.max_chars is not None and len(composed.text) > self.max_chars:
            parts = tuple(split_message(composed.text, self.max_chars, MAX_PARTS))
            composed = dataclasses.replace(composed, parts=parts)
        return _Next(row, composed, 1)

    def _spaced(self, stream: str) -> bool:
        """Whether the gate spaces ``stream``'s sends (or counts them: automated kinds have daily
        caps, which a batch's own reservations would slip past). Welcomes with no gap configured
        go out as many to a batch as are due."""
        return self.gate is not None and (stream != "welcome" or self.gate.spacing(stream)[1] > timedelta(0))

    def _slot(self, paced: tuple[str, str], earliest: datetime) -> datetime:
        """The slot of a row held back on a paced stream: ``earliest``, or a gap after the last
        slot this process gave that stream, whichever is later. Each row held back gets its own
        slot, and at its slot only the least gap is asked of it (its gap was drawn here), so a
        burst of n rows is deferred about n times in all, not each row once per dispatch round
        until its turn (they used to be told one time, all met again, one went, and so on)."""
        assert self.gate is not None
        tail = self._tail.get(paced)
        return earliest if tail is None else max(earliest, tail + self.gate.gap(paced[1]))

    async def _hold(
        self,
        session: AsyncSession,
        after_commit: list[Callable[[], Awaitable[object]]],
        row: ScheduledMessage,
        until: datetime,
        reason: str,
        queued: tuple[str, str] | None,
    ) -> None:
        """Defer ``row`` to ``until`` (its slot on ``queued``, the stream it queues on), or expire
        it when that is past its validity (the rep is told)."""
        now = self.clock.now()
        if until > row.not_after:
            await Outbox(session).mark(row.id or 0, "expired", now, f"could not be sent in time: {reason}")
            self._tell_undeliverable(after_commit, row, reason)
            return
        await Outbox(session).defer(row.id or 0, until, now, reason)
        if queued is not None:
            self._tail[queued] = until
            if len(self._slotted) >= _SLOTTED_KEPT:  # rows cancelled or moved away meanwhile
                self._slotted = {key: at for key, at in self._slotted.items() if at > now - _SLOT_STALE}
            self._slotted[row.id or 0] = until

    async def _reserve(self, session: AsyncSession, sends: list[_Next], group: str) -> list[_Step]:
        """Reserve the batch's sends in ``group``, in one statement, in the order they go out:
        outgoing-log id order, which recovery reads as the batch's send order."""
        wanted = []
        for send in sends:
            row, composed = send.row, send.composed
            texts = composed.texts()
            attachment = composed.attachment if send.part > len(texts) else None
            wanted.append(
                Reservation(
                    None,
                    row.account_id,
                    composed.conversation_id,
                    attachment.describe() if attachment is not None else texts[send.part - 1],
                    composed.kind or row.kind,
                    _part_key(row.idempotency_key, send.part, attachment is not None, composed.keyed()),
                    row.customer_id,
                    attachment,
                )
            )
        reserved = await self.messenger.reserve_many(session, wanted, group)
        steps = [
            _Step(s.row, s.composed, s.part, s.composed.sends(), r, self.lease_token(s.row.account_id))
            for s, r in zip(sends, reserved, strict=True)
        ]
        # a key that failed before keeps its older id: it goes first, as recovery will read it
        return sorted(steps, key=lambda step: step.reservation.outgoing_id or 0)

    async def _settle(
        self,
        session: AsyncSession,
        step: _Step,
        result: SendResult,
        after_commit: list[Callable[[], Awaitable[object]]],
        done: list[int],
    ) -> _Next | None:
        """Settle a row after a send (its outgoing-log outcome and contact are recorded already);
        returns the next part when a long message goes on. Rows sent in full are added to
        ``done`` (marked together by the caller)."""
        row = step.row
        delivered = result.delivery in (Delivery.SENT, Delivery.DUPLICATE)
        if delivered and step.part < step.parts:
            return _Next(row, step.composed, step.part + 1)
        now = self.clock.now()
        if result.delivery is Delivery.NOT_CONNECTED:
            # nothing went out; the row waits for the account to reconnect (claims skip it till then)
            await Outbox(session).defer(row.id or 0, now, now, result.error)
        elif delivered:
            done.append(row.id or 0)
            if result.delivery is Delivery.SENT:
                after_commit.append(functools.partial(self.hooks.emit, MessageSent(row)))
        elif result.delivery is Delivery.UNKNOWN:
            error = f"{DELIVERY_UNKNOWN}: {result.error}; check the chat"
            await self._fail(session, after_commit, row, error, alert=True, unsent=_unsent(step))
        elif result.delivery is Delivery.UNREACHABLE:
            await self._fail(session, after_commit, row, "customer is no longer a friend", alert=False)
            if row.customer_id is not None:
                unreachable = CustomerUnreachable(row.customer_id, result.error)
                after_commit.append(functools.partial(self.hooks.emit, unreachable))
        else:
            unsent = _unsent(step)
            error = f"send failed: {result.error}" + (
                f" (after the earlier parts went out: {unsent})" if unsent else ""
            )
            await self._fail(session, after_commit, row, error, alert=True, unsent=unsent)
        return None

    async def _fail(
        self,
        session: AsyncSession,
        after_commit: list[Callable[[], Awaitable[object]]],
        row: ScheduledMessage,
        error: str,
        *,
        alert: bool,
        unsent: str = "",
    ) -> None:
        """Mark the row failed, log ``<kind>_failed`` for the digest, and tell the rep if asked
        (``unsent``: the part that did not go out when earlier parts did)."""
        now = self.clock.now()
        await Outbox(session).mark(row.id or 0, "failed", now, error)
        await Events(session).record(
            row.account_id, f"{row.kind}_failed", now, customer_id=row.customer_id, data={"error": error}
        )
        if alert:
            self._tell_undeliverable(after_commit, row, error, unsent)

    def _tell_undeliverable(
        self,
        after_commit: list[Callable[[], Awaitable[object]]],
        row: ScheduledMessage,
        reason: str,
        unsent: str = "",
    ) -> None:
        if row.kind in CONSOLE_KINDS:
            # reporting a failed console message to that same console would fail again, and again
            log.warning("console %s %s not delivered: %s", row.kind, row.idempotency_key, reason)
            return
        after_commit.append(functools.partial(self.hooks.emit, Undeliverable(row, reason, unsent)))


@dataclass(frozen=True)
class Recovery:
    settled: int
    # rows whose send was under way when the process died: marked failed, "delivery unknown"
    in_doubt: list[ScheduledMessage]


@dataclass(frozen=True)
class _Step:
    """One send of a claimed row (a long message goes out part by part), reserved and committed."""

    row: ScheduledMessage
    composed: Composed
    part: int
    parts: int
    reservation: Reservation
    # the account's lease this send was reserved under (its fencing token); None: no leases
    lease: datetime | None = None


@dataclass(frozen=True)
class _Next:
    """A send still to be reserved: part ``part`` (from 1) of a composed row."""

    row: ScheduledMessage
    composed: Composed
    part: int


@dataclass(frozen=True)
class _InFlight:
    step: _Step
    result: SendResult


def _went_out(item: _InFlight) -> bool:
    """Whether this send was the last of its row and went out (or had gone out before)."""
    delivered = item.result.delivery in (Delivery.SENT, Delivery.DUPLICATE)
    return delivered and item.step.part >= item.step.parts


def _no_token(account_id: str) -> datetime | None:
    return None


async def _always(account_id: str, token: datetime | None) -> bool:
    return True


def _unsent(step: _Step) -> str:
    """What of a message in parts is missing when this send failed after earlier parts went out:
    "" for the first send (nothing reached the customer)."""
    if step.part <= 1:
        return ""
    attachment = step.reservation.attachment
    if attachment is not None:
        return f"{LABELS[attachment.type]}「{attachment.name}」"
    return f"第{step.part}段起的文字"


def _unsent_logged(sent: OutgoingMessage) -> str:
    """:func:`_unsent` of a logged part (recovery): its key says which part, its text (for an
    attachment, "[图片] x.png") what it was."""
    if sent.idempotency_key.endswith(ATTACHMENT_KEY_SUFFIX):
        label, _, name = sent.text.partition("] ")
        return f"{label.removeprefix('[')}「{name}」"
    return f"第{sent.idempotency_key.rsplit(':', 1)[-1]}段起的文字"


# the slots remembered for held-back rows: pruned of those long past when there are this many
_SLOTTED_KEPT = 10_000
_SLOT_STALE = timedelta(hours=1)


def _paced_stream(kind: str) -> str | None:
    """Sends the gate paces per account (one per batch; the next batch's gate spaces them)."""
    if kind in AUTOMATED_KINDS:
        return "automated"
    return "welcome" if kind == Kind.WELCOME else None


async def _parts(outgoing: OutgoingLog, key: str) -> list[OutgoingMessage]:
    """The outgoing-log rows of a message sent in parts: ``<key>:1``... then ``<key>:attachment``."""
    found = []
    for part in [*range(1, MAX_PARTS + 1), 0]:  # 0: the attachment
        sent = await outgoing.by_key(_part_key(key, part, part == 0, True))
        if sent is not None:
            found.append(sent)
    return found


def _reservation_of(sent: OutgoingMessage) -> Reservation:
    """A logged send as a reservation, to record its contact after the fact (recovery)."""
    return Reservation(
        sent.id,
        sent.account_id,
        sent.conversation_id,
        sent.text,
        sent.kind,
        sent.idempotency_key,
        sent.customer_id,
    )


def _part_key(key: str, part: int, attachment: bool, keyed: bool) -> str:
    """The outgoing-log key of one send of a row: the row's own key for a single text, else
    ``<key>:<part>`` for a text's parts and ``<key>:attachment`` for its attachment (which is
    then never taken for the text that made a promise, see storage/queries/promises.py)."""
    if attachment:
        return f"{key}{ATTACHMENT_KEY_SUFFIX}"
    return f"{key}:{part}" if keyed else key


def _process_gone(group: str) -> bool:
    """Whether the process that sent an attempt group (on this host) has ended: a live one (a
    second dispatcher on the same database) still holds the rest of its batch."""
    try:
        pid = int(group.split("/")[-2])
    except (IndexError, ValueError):
        return False
    if sys.platform == "win32":  # no signal 0 there: assume alive
        return False
    if pid == os.getpid():
        return True  # an earlier process that had our pid: we have not dispatched yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's): assume alive
    return False


async def _run_effects(effects: list[Callable[[], Awaitable[object]]]) -> None:
    """Notifications after a commit (alerts, hook listeners). One failing must not stop the batch
    just reserved from going out: it is logged."""
    for effect in effects:
        try:
            await effect()
        except Exception:
            log.exception("after dispatching: a notification failed")


def _announce(messenger: Messenger, sent: Sent) -> Callable[[], Awaitable[None]]:
    async def announce() -> None:
        await messenger.announce(sent)

    return announce
