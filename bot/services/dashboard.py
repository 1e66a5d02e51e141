"""What the dashboard shows beyond today's numbers: the funnel with conversion and time in stage,
daily trends, script effectiveness, who needs attention and lifecycle counts.

It reuses the services that already answer these questions for chat (the digest's day, KOC rules,
/scripts stats), so the page and the digest never disagree. Plain data, labels already Chinese.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.clock import Clock
from bot.config import Config
from bot.domain.display import lifecycle_name
from bot.domain.lifecycle import Lifecycle
from bot.domain.schedule import local_at, local_day_bounds
from bot.domain.stages import Pipeline
from bot.services.digest import DigestService
from bot.services.script_library import ScriptLibraryService
from storage.db import Database
from storage.queries import dashboard as queries
from storage.queries import lifecycle as lifecycle_queries
from storage.queries import listings

# trends: measure key -> (label, event kinds, counted as distinct customers per day)
MEASURES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "new_friends": ("新好友", ("friend_request", "friend_confirmed"), True),
    "replied": ("回复的客户", ("message_in",), True),
    "orders": ("成交", ("order",), False),
    "objections": ("顾虑", ("objection",), False),
}
TREND_SPANS = (7, 30)
# time in stage: the stays begun this recently (what the team does now, and a bounded read)
STAY_WINDOW_DAYS = 90
SCRIPTS_SHOWN = 20
# the digest names a customer "name#id" (then maybe what happened): split back for the page
_WHO = re.compile(r"^(?P<name>.*)#(?P<id>\d+)(?: (?P<note>.*))?$", re.S)


@dataclass(frozen=True)
class FunnelStage:
    """One stage: live customers in it now, customers who ever reached it (or a later stage),
    the share of those who went on to the next stage, and the median time spent in it (stays
    begun in the last STAY_WINDOW_DAYS; one still under way counts up to now)."""

    stage: str
    label: str
    customers: int
    reached: int
    conversion: float | None  # to the next stage; None for the last or when nobody reached it
    median_hours: float | None


@dataclass(frozen=True)
class Trend:
    measure: str
    label: str
    days: list[tuple[date, int]]  # oldest first, today last

    @property
    def total(self) -> int:
        return sum(count for _, count in self.days)


@dataclass(frozen=True)
class Who:
    """A customer the page lists: name, id (for @#id in the console) and a note."""

    name: str
    customer_id: int | None
    note: str = ""
    account: str = ""


@dataclass(frozen=True)
class ScriptRow:
    account: str  # the rep's nickname
    name: str
    sent: int
    succeeded: int
    rate: float
    thin: bool  # sent too few times for the rate to mean much


@dataclass(frozen=True)
class Attention:
    hot_leads: list[Who]
    owed: list[Who]
    at_risk: list[Who]
    koc: list[Who]


def stay_text(hours: float | None) -> str:
    """A time in stage as a person reads it: 3小时, 2.5天."""
    if hours is None:
        return "—"
    if hours < 1:
        return "不到1小时"
    if hours < 24:
        return f"{round(hours)}小时"
    days = round(hours / 24, 1)
    return f"{days:g}天"


def _who(text: str, account: str = "") -> Who:
    found = _WHO.match(text)
    if found is None:
        return Who(text, None, account=account)
    return Who(found["name"], int(found["id"]), found["note"] or "", account)


class DashboardService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        digests: DigestService,
        scripts: ScriptLibraryService | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.digests = digests
        self.scripts = scripts
        self.pipeline = Pipeline(config.stages)

    @property
    def _accounts(self) -> list[str]:
        return [a.id for a in self.config.accounts]

    async def funnel(self) -> list[FunnelStage]:
        """The pipeline's stages with conversion (everyone ever added) and time in stage (stays
        begun in the last STAY_WINDOW_DAYS), from the stage history."""
        now = self.clock.now()
        stages = [s.key for s in self.pipeline.stages]
        async with self.db.transaction() as session:
            current = await listings.stage_counts(session)
            reached = [await queries.reached(session, self._accounts, stages[i:]) for i in range(len(stages))]
            entries = await queries.stage_entries(
                session, self._accounts, now - timedelta(days=STAY_WINDOW_DAYS)
            )
        stays: dict[str, list[float]] = defaultdict(list)
        for i, (customer_id, stage, at, gone) in enumerate(entries):
            following = entries[i + 1] if i + 1 < len(entries) else None
            left = following[2] if following and following[0] == customer_id else (gone or now)
            stays[stage].append(max(0.0, (left - at).total_seconds() / 3600))
        return [
            FunnelStage(
                stage=s.key,
                label=s.label,
                customers=current.get(s.key, 0),
                reached=reached[i],
                conversion=(reached[i + 1] / reached[i]) if i + 1 < len(stages) and reached[i] else None,
                median_hours=statistics.median(stays[s.key]) if stays[s.key] else None,
            )
            for i, s in enumerate(self.pipeline.stages)
        ]

    async def trends(self) -> dict[int, list[Trend]]:
        """Per span (7 and 30 days, today so far included): each measure per local day, one
        grouped query per day."""
        tz = self.config.tz
        now = self.clock.now()
        today = now.astimezone(tz).date()
        kinds = {kind for _, measure_kinds, _ in MEASURES.values() for kind in measure_kinds}
        days = [today - timedelta(days=back) for back in range(max(TREND_SPANS) - 1, -1, -1)]
        counted: dict[str, dict[date, int]] = {measure: {} for measure in MEASURES}
        async with self.db.transaction() as session:
            for day in days:
                start, end = local_day_bounds(local_at(day, datetime.min.time(), tz), tz)
                found = await queries.day_activity(
                    session, self._accounts, start, min(end, now + timedelta(microseconds=1)), kinds
                )
                for measure, (_, measure_kinds, distinct) in MEASURES.items():
                    mine = [(c, n) for k, c, n in found if k in measure_kinds]
                    counted[measure][day] = (
                        len({c for c, _ in mine if c is not None}) if distinct else sum(n for _, n in mine)
                    )
        return {
            span: [
                Trend(measure, label, [(d, counted[measure][d]) for d in days[-span:]])
                for measure, (label, _, _) in MEASURES.items()
            ]
            for span in TREND_SPANS
        }

    async def scripts_effectiveness(self) -> list[ScriptRow]:
        """/scripts stats for every rep, ranked as there (best first), at most SCRIPTS_SHOWN."""
        if self.scripts is None:
            return []
        rows: list[ScriptRow] = []
        minimum = self.config.objections.min_sends_for_ranking
        for account in self.config.accounts:
            for ranked in await self.scripts.ranking(account.id):
                s = ranked.stats
                rows.append(
                    ScriptRow(
                        account.profile.nickname, ranked.name, s.sent, s.succeeded, s.rate, s.sent < minimum
                    )
                )
        rows.sort(key=lambda r: (r.thin, -r.rate, -r.succeeded, -r.sent))
        return rows[:SCRIPTS_SHOWN]

    async def attention(self) -> Attention:
        """Hot leads today, customers owed a reply, silent likely buyers and KOC candidates, as the
        digest finds them (its day so far and its KOC rules)."""
        tz = self.config.tz
        now = self.clock.now()
        start, _ = local_day_bounds(now.astimezone(tz), tz)
        cut = now + timedelta(microseconds=1)
        accounts = self._accounts
        async with self.db.transaction() as session:
            days = await self.digests.team_day(session, accounts, start, cut, cut)
            candidates = await self.digests.koc.candidates(session, accounts)
        hot, owed, at_risk, koc = [], [], [], []
        engaged = self.config.koc.engaged_days
        for account_id in accounts:
            nickname = self.config.account(account_id).profile.nickname
            day = days[account_id]
            hot += [_who(text, nickname) for text in day.hot_leads]
            owed += [_who(text, nickname) for text in day.owed]
            at_risk += [_who(text, nickname) for text in day.at_risk]
            koc += [
                Who(c.name, c.customer_id, c.why(engaged), nickname) for c in candidates.get(account_id, [])
            ]
        return Attention(hot, owed, at_risk, koc)

    async def lifecycle(self) -> list[tuple[str, str, int]]:
        """(state, Chinese name, customers) for every lifecycle state, in the lifecycle's order."""
        async with self.db.transaction() as session:
            found = await lifecycle_queries.state_counts(session, self._accounts)
        counts: dict[str, int] = defaultdict(int)
        for _, state, count in found:
            counts[state] += count
        return [(state.value, lifecycle_name(state), counts.get(state.value, 0)) for state in Lifecycle]

    async def names(self, customer_ids: set[int]) -> dict[int, str]:
        async with self.db.transaction() as session:
            return await queries.names(session, customer_ids)
