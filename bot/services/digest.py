"""The supervisors' daily digest: per rep and team, for one local day, against the day before.

Each supervisor's digest for a day is a row in the outbox (key ``digest:<name>:<date>``): it goes
out at the configured local time, is still sent at startup within the grace period if the bot was
down, and never twice. Numbers come from grouped, indexed queries over the event log and the
outgoing log, so a large team stays cheap.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config, SupervisorConfig
from bot.domain.display import lifecycle_name
from bot.domain.kinds import AUTOMATED_KINDS, Kind
from bot.domain.lifecycle import Lifecycle
from bot.domain.limits import MAX_NAME_CHARS, clip, split_message
from bot.domain.schedule import local_at, local_day_bounds
from bot.domain.stages import Pipeline
from bot.hooks import Hooks, Planned
from bot.objections.library import ObjectionLibrary
from bot.services.koc import KocService
from bot.services.outbox import Composed
from bot.services.planning import message_key, outbox_row
from bot.templates import TemplateLibrary
from storage.db import Database
from storage.models import Customer, ScheduledMessage
from storage.queries import digest as queries
from storage.queries import lifecycle as lifecycle_queries
from storage.repositories import Outbox

DIGEST = Kind.DIGEST
WEEKDAYS = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]
COUNTED = ("friend_request", "friend_confirmed", "welcome_failed", "order", "customer_deleted")
# events about what customers signalled, listed by name (a "signal" event only for a soft opt-out)
SIGNALLED = ("hot_lead", "hook_triggered", "opt_out", "signal", "referral")


@dataclass
class RepDay:
    """What happened for one account in one window."""

    new_friends: int = 0
    welcomes_sent: int = 0
    welcomes_failed: int = 0
    replied: int = 0
    objections: Counter[str] = field(default_factory=Counter)
    stage_moves: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    scheduled_sent: int = 0
    scheduled_failed: int = 0
    scheduled_expired: int = 0
    planned_tomorrow: int = 0
    deleted: int = 0
    corrections: int = 0  # the rep's /wrong and /label: how often the reader was corrected
    owed: list[str] = field(default_factory=list)
    owed_dropped: int = 0  # unanswered messages that turned older than owed_reply_max_days
    at_risk: list[str] = field(default_factory=list)
    after_sale_silent: list[str] = field(default_factory=list)
    tags: Counter[str] = field(default_factory=Counter)
    # what customers signalled (issue 17), each "name#id": listed only when there is one
    hot_leads: list[str] = field(default_factory=list)  # with whether and how fast the rep answered
    hot_answered: int = 0
    hooks: Counter[str] = field(default_factory=Counter)  # promises kept, by keyword
    opt_outs: list[str] = field(default_factory=list)
    soft_opt_outs: list[str] = field(default_factory=list)
    referrals: list[str] = field(default_factory=list)
    koc: list[str] = field(default_factory=list)  # candidates as of now (not compared)
    lifecycle: Counter[str] = field(default_factory=Counter)  # customers per state, at the span's end
    newly_dormant: list[str] = field(default_factory=list)  # names of those who turned dormant

    def is_quiet(self) -> bool:
        """Nothing happened and nobody waits: the digest has nothing to report."""
        counts = (
            self.new_friends,
            self.welcomes_sent,
            self.welcomes_failed,
            self.replied,
            self.orders,
            self.scheduled_sent,
            self.scheduled_failed,
            self.scheduled_expired,
            self.deleted,
            self.corrections,
            self.owed_dropped,
        )
        waiting = (
            self.owed,
            self.at_risk,
            self.after_sale_silent,
            self.hot_leads,
            self.opt_outs,
            self.soft_opt_outs,
            self.referrals,
            self.newly_dormant,
        )
        return not any(counts) and not any(waiting) and not self.objections and not self.stage_moves

    def add(self, other: RepDay) -> None:
        for name in (
            "new_friends",
            "welcomes_sent",
            "welcomes_failed",
            "replied",
            "orders",
            "scheduled_sent",
            "scheduled_failed",
            "scheduled_expired",
            "planned_tomorrow",
            "deleted",
            "corrections",
            "owed_dropped",
            "hot_answered",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.objections.update(other.objections)
        self.stage_moves.update(other.stage_moves)
        self.tags.update(other.tags)
        self.hooks.update(other.hooks)
        self.lifecycle.update(other.lifecycle)
        for name in (
            "owed",
            "at_risk",
            "after_sale_silent",
            "hot_leads",
            "opt_outs",
            "soft_opt_outs",
            "referrals",
            "koc",
            "newly_dormant",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class DigestService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        templates: TemplateLibrary,
        library: ObjectionLibrary,
        hooks: Hooks | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.templates = templates
        self.library = library
        self.hooks = hooks or Hooks()  # `salesbot digest` prints only: nobody listens
        self.pipeline = Pipeline(config.stages)
        self.koc = KocService(db, clock, config)
        self._planned_through: date | None = None

    # -- planning ---------------------------------------------------------------------------------

    async def ensure_planned(self) -> None:
        """Make sure today's and tomorrow's digest rows exist (cheap after the first call each day)."""
        now = self.clock.now()
        today = now.astimezone(self.config.tz).date()
        if self._planned_through == today or not self.config.supervisors:
            return
        grace = timedelta(hours=self.config.digest.grace_hours)
        planned: list[datetime] = []
        async with self.db.transaction() as session:
            for supervisor in self.config.supervisors:
                for day in (today, today + timedelta(days=1)):
                    due = local_at(day, supervisor.at, self.config.tz)
                    await Outbox(session).plan(
                        outbox_row(
                            account_id=supervisor.account,
                            kind=DIGEST,
                            # one digest per supervisor and day, whichever account sends it
                            key=message_key(None, DIGEST, supervisor.name, day.isoformat()),
                            sequence=f"digest:{supervisor.name}",
                            step=day.isoformat(),
                            template=self.config.digest.template,
                            context={"supervisor": supervisor.name, "day": day.isoformat()},
                            due=due,
                            not_after=due + grace,
                            now=now,
                        )
                    )
                    planned.append(due)
        for due in planned:
            await self.db.after_commit(functools.partial(self.hooks.emit, Planned(due)))
        self._planned_through = today

    # -- numbers ----------------------------------------------------------------------------------

    async def team_day(
        self, session: AsyncSession, account_ids: list[str], start: datetime, end: datetime, now: datetime
    ) -> dict[str, RepDay]:
        """What happened per account in [start, end): one grouped query per measure for the whole team."""
        days = {account_id: RepDay() for account_id in account_ids}
        await self._events(session, days, start, end)
        await self._signals(session, days, start, end, now)
        await self._sends(session, days, start, end)
        await self._customers(session, days, start, now)
        return days

    async def _signals(
        self, session: AsyncSession, days: dict[str, RepDay], start: datetime, end: datetime, now: datetime
    ) -> None:
        """Hot leads (and whether, how fast the rep answered by ``now``), promises kept, opt-outs
        and referrals: who, from the event log."""
        found = await queries.customer_events(session, list(days), start, end, SIGNALLED)
        hot = [event for event, _, _ in found if event.kind == "hot_lead"]
        answers: dict[int, list[datetime]] = {}
        since = min((event.at for event in hot), default=start)
        for customer_id, at in await queries.rep_answers(
            session, {e.customer_id for e in hot if e.customer_id is not None}, since, now
        ):
            answers.setdefault(customer_id, []).append(at)
        seen: set[tuple[str, int | None]] = set()
        for event, name, remark in found:
            day = days[event.account_id]
            who = f"{clip(remark or name, MAX_NAME_CHARS)}#{event.customer_id}"
            if event.kind == "hook_triggered":
                day.hooks[str(event.data.get("keyword", ""))] += 1
                continue
            if event.kind == "hot_lead":
                first = min(
                    (at for at in answers.get(event.customer_id or 0, []) if at >= event.at), default=None
                )
                if first is None:
                    day.hot_leads.append(f"{who} 还没回复")
                else:
                    day.hot_answered += 1
                    day.hot_leads.append(f"{who} {_after(first - event.at)}回复")
                continue
            if event.kind == "signal" and event.data.get("signal") != "opt_out_soft":
                continue
            if (event.kind, event.customer_id) in seen:  # one customer once per list
                continue
            seen.add((event.kind, event.customer_id))
            {"opt_out": day.opt_outs, "signal": day.soft_opt_outs, "referral": day.referrals}[
                event.kind
            ].append(who)

    async def _koc(self, session: AsyncSession, days: dict[str, RepDay]) -> None:
        """Each rep's KOC candidates, as of now."""
        found = await self.koc.candidates(session, list(days))
        for account_id, candidates in found.items():
            days[account_id].koc = [f"{c.name}#{c.customer_id}" for c in candidates]

    async def _lifecycle(
        self, session: AsyncSession, days: dict[str, RepDay], start: datetime, end: datetime
    ) -> None:
        """Customers per lifecycle state at ``end`` (a past day's digest counts that day's, read
        back from the lifecycle_changed events since) and who turned dormant in [start, end)."""
        if end > self.clock.now():
            counts = await lifecycle_queries.state_counts(session, list(days))
        else:
            counts = await lifecycle_queries.state_counts_at(session, list(days), end)
        for account_id, state, count in counts:
            days[account_id].lifecycle[state] += count
        seen: set[int | None] = set()
        for event, name, remark in await queries.customer_events(
            session, list(days), start, end, ("lifecycle_changed",)
        ):
            if event.data.get("to") == "dormant" and event.customer_id not in seen:
                seen.add(event.customer_id)
                days[event.account_id].newly_dormant.append(clip(remark or name, MAX_NAME_CHARS))

    async def _events(
        self, session: AsyncSession, days: dict[str, RepDay], start: datetime, end: datetime
    ) -> None:
        """Orders, failed welcomes, deletions, new friends, replies, objections, stage moves, tags
        and corrections, from the event log."""
        accounts = list(days)
        for account_id, kind, count in await queries.event_counts(session, accounts, start, end, COUNTED):
            day = days[account_id]
            if kind == "welcome_failed":
                day.welcomes_failed = count
            elif kind == "order":
                day.orders = count
            elif kind == "customer_deleted":
                day.deleted = count
        for kinds, attribute in (
            (("friend_request", "friend_confirmed"), "new_friends"),
            (("message_in",), "replied"),
        ):
            for account_id, count in await queries.customers_with_events(
                session, accounts, start, end, kinds
            ):
                setattr(days[account_id], attribute, count)
        for account_id, kind, data, text in await queries.event_details(
            session, accounts, start, end, ("objection", "stage_changed", "tag_added", "correction")
        ):
            day = days[account_id]
            if kind == "objection":
                day.objections[str(data.get("label"))] += 1
            elif kind == "correction":
                day.corrections += 1
            elif kind == "stage_changed":
                day.stage_moves[str(data.get("to"))] += 1
            else:
                day.tags[text] += 1

    async def _sends(
        self, session: AsyncSession, days: dict[str, RepDay], start: datetime, end: datetime
    ) -> None:
        """Welcomes and automated messages sent, failed and expired; tomorrow's plan."""
        accounts = list(days)
        sent = await queries.sent_counts(session, accounts, start, end, ("welcome", *AUTOMATED_KINDS))
        for account_id, kind, count in sent:
            if kind == "welcome":
                days[account_id].welcomes_sent = count
            else:
                days[account_id].scheduled_sent += count
        for account_id, status, count in await queries.scheduled_outcomes(
            session, accounts, start, end, AUTOMATED_KINDS, ("failed", "expired")
        ):
            if status == "failed":
                days[account_id].scheduled_failed = count
            else:
                days[account_id].scheduled_expired = count
        tomorrow_start, tomorrow_end = local_day_bounds(start + timedelta(hours=36), self.config.tz)
        for account_id, count in await queries.planned_counts(
            session, accounts, tomorrow_start, tomorrow_end, AUTOMATED_KINDS
        ):
            days[account_id].planned_tomorrow = count

    async def _customers(
        self, session: AsyncSession, days: dict[str, RepDay], start: datetime, now: datetime
    ) -> None:
        """As of ``now``: customers owed a reply (only a human answer counts; not after an
        opt-out; for at most owed_reply_max_days, then counted once as dropped), customers gone
        silent before the order (at risk) and after it (after-sale)."""
        cfg = self.config.digest
        accounts = list(days)
        owed_before = now - timedelta(minutes=cfg.owed_reply_minutes)
        max_age = timedelta(days=cfg.owed_reply_max_days)
        for account_id, customer_id, name, remark in await queries.owed_replies(
            session, accounts, owed_before, now - max_age
        ):
            days[account_id].owed.append(f"{clip(remark or name, MAX_NAME_CHARS)}#{customer_id}")
        for account_id, count in await queries.owed_dropped(
            session, accounts, start - max_age, now - max_age
        ):
            days[account_id].owed_dropped += count
        ordered = self.config.pipeline.order_stage
        from_stage = cfg.at_risk_from_stage
        before_order = [
            s.key
            for s in self.pipeline.stages
            if not self.pipeline.is_before(s.key, from_stage) and self.pipeline.is_before(s.key, ordered)
        ]
        for account_id, customer_id, name, remark in await queries.at_risk(
            session, accounts, before_order, now - timedelta(days=cfg.at_risk_days)
        ):
            days[account_id].at_risk.append(f"{clip(remark or name, MAX_NAME_CHARS)}#{customer_id}")
        after_order = [s.key for s in self.pipeline.stages if not self.pipeline.is_before(s.key, ordered)]
        for account_id, customer_id, name, remark in await queries.at_risk(
            session, accounts, after_order, now - timedelta(days=cfg.after_sale_silent_days)
        ):
            days[account_id].after_sale_silent.append(f"{clip(remark or name, MAX_NAME_CHARS)}#{customer_id}")

    # -- rendering --------------------------------------------------------------------------------

    async def render(
        self,
        account_ids: Iterable[str],
        day: date,
        title: str,
        *,
        window: tuple[datetime, datetime] | None = None,
        quiet: str = "full",
    ) -> list[str]:
        """The digest for these accounts, split for chat: of ``day`` (up to now, if ``day`` is
        today) or of ``window`` [start, end), compared with the same span a day earlier. A quiet
        span (nothing to report) renders in full, as one short line (``quiet="line"``) or not at
        all (``"skip"``: an empty list)."""
        tz = self.config.tz
        now = self.clock.now()
        start, end = window or local_day_bounds(local_at(day, datetime.min.time(), tz), tz)
        cut = min(end, now + timedelta(microseconds=1))  # "so far" includes this very moment
        previous_start, previous_cut = start - timedelta(days=1), cut - timedelta(days=1)
        accounts = list(account_ids)
        reps, team, team_before = [], RepDay(), RepDay()
        async with self.db.transaction() as session:
            today = await self.team_day(session, accounts, start, cut, cut)
            await self._koc(session, today)
            await self._lifecycle(session, today, start, cut)
            before = await self.team_day(session, accounts, previous_start, previous_cut, previous_cut)
        for account_id in accounts:
            team.add(today[account_id])
            team_before.add(before[account_id])
            nickname = self.config.account(account_id).profile.nickname
            reps.append(self._view(nickname, today[account_id], before[account_id]))
        label = f"{day.month}月{day.day}日 {WEEKDAYS[day.weekday()]}"
        period = ""
        if window is not None:
            local_start, local_cut = start.astimezone(tz), cut.astimezone(tz)
            period = f"{local_start.month}月{local_start.day}日 {local_start:%H:%M} 至 "
            period += (
                f"{local_cut:%H:%M}"
                if local_cut.date() == local_start.date()
                else (f"{local_cut.month}月{local_cut.day}日 {local_cut:%H:%M}")
            )
        if quiet != "full" and team.is_quiet():
            if quiet == "skip":
                return []
            span = f"（{period}）" if period else ""
            return [f"📊 {title} · {label}{span}：这段时间没有新动静，也没有待跟进的客户。"]
        context: dict[str, Any] = {
            "title": title,
            "date": label,
            "until": f"{cut.astimezone(tz):%H:%M}" if cut < end and not period else "",
            "period": period,
            "reps": reps,
            "team": self._view("团队合计", team, team_before),
            "multiple": len(reps) > 1,
            "owed_max_days": self.config.digest.owed_reply_max_days,
            # the span is over: its counts are as of its end, but KOC candidates are today's
            "past": cut < now,
        }
        return split_message(
            self.templates.render(self.config.digest.template, context), self.config.digest.max_chars
        )

    def _view(self, name: str, today: RepDay, before: RepDay) -> dict[str, Any]:
        def number(value: int, previous: int) -> str:
            change = value - previous
            return f"{value}（{'+' if change > 0 else ''}{change}）" if change else f"{value}（持平）"

        objections = "、".join(
            f"{self.library.name(label)}{count}" for label, count in today.objections.most_common()
        )
        funnel = " → ".join(f"{s.label}{today.stage_moves.get(s.key, 0)}" for s in self.pipeline.stages)
        return {
            "name": name,
            "new_friends": number(today.new_friends, before.new_friends),
            "welcomes": f"{today.welcomes_sent}"
            + (f"，失败{today.welcomes_failed}" if today.welcomes_failed else ""),
            "replied": number(today.replied, before.replied),
            "objections": objections or "无",
            "objection_total": number(sum(today.objections.values()), sum(before.objections.values())),
            "funnel": funnel,
            "orders": number(today.orders, before.orders),
            "scheduled": (
                f"已发{today.scheduled_sent}，失败{today.scheduled_failed}，"
                f"过期{today.scheduled_expired}，明日计划{today.planned_tomorrow}"
            ),
            "deleted": number(today.deleted, before.deleted),
            "corrections": number(today.corrections, before.corrections),
            "owed": today.owed,
            "owed_dropped": today.owed_dropped,
            "at_risk": today.at_risk,
            "after_sale_silent": today.after_sale_silent,
            "top_tags": "、".join(f"{tag}×{count}" for tag, count in today.tags.most_common(3)) or "无",
            "hot_leads": today.hot_leads,
            "hot_answered": today.hot_answered,
            "hooks": "、".join(f"“{keyword}”{count}次" for keyword, count in today.hooks.most_common()),
            "hook_total": sum(today.hooks.values()),
            "opt_outs": today.opt_outs,
            "soft_opt_outs": today.soft_opt_outs,
            "referrals": today.referrals,
            "koc": today.koc,
            "lifecycle": "、".join(
                f"{lifecycle_name(state)}{today.lifecycle.get(state, 0)}" for state in Lifecycle
            ),
            "newly_dormant": today.newly_dormant,
        }

    async def for_supervisor(
        self, supervisor: SupervisorConfig, day: date, *, quiet: str | None = None
    ) -> list[str]:
        """The digest due on ``day`` at the supervisor's time: since the previous one (so nothing
        falls between two digests) or the whole previous day (``digest.covers``)."""
        tz = self.config.tz
        if self.config.digest.covers == "previous_day":
            previous = day - timedelta(days=1)
            window = local_day_bounds(local_at(previous, datetime.min.time(), tz), tz)
            day = previous
        else:
            window = (local_at(day - timedelta(days=1), supervisor.at, tz), local_at(day, supervisor.at, tz))
        title = f"{supervisor.name}的团队日报"
        return await self.render(
            supervisor.accounts, day, title, window=window, quiet=quiet or self.config.digest.quiet
        )


class DigestComposer:
    """Renders a supervisor's digest when it is due; sends each part under its own key."""

    def __init__(self, service: DigestService, console: Callable[[str, str], str]) -> None:
        self.service = service
        self.contact_of = console

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        supervisor = self.service.config.supervisor(str(row.context["supervisor"]))
        parts = await self.service.for_supervisor(supervisor, date.fromisoformat(str(row.context["day"])))
        if not parts:
            return None  # a quiet day and digest.quiet = "skip"
        return Composed(
            self.contact_of(supervisor.account, supervisor.contact), "\n".join(parts), parts=tuple(parts)
        )


def _after(waited: timedelta) -> str:
    """How long the rep took to answer, in the digest's words: 8分钟后, 2小时后."""
    minutes = max(0, round(waited.total_seconds() / 60))
    if minutes < 1:
        return "马上"
    if minutes < 60:
        return f"{minutes}分钟后"
    hours, rest = divmod(minutes, 60)
    return f"{hours}小时{f'{rest}分钟' if rest else ''}后"
