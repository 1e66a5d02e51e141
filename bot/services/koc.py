"""KOC candidates: customers worth cultivating as fans (``[koc]`` rules: repeat orders, referrals,
sustained engagement after buying), until the rep promotes them to the stage the pipeline maps to
the ``koc`` process step (``/stage``). ``/koc`` lists a rep's; the daily digest lists them per rep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.limits import MAX_NAME_CHARS, clip
from bot.domain.stages import Pipeline
from storage.db import Database
from storage.models import Customer
from storage.queries import koc as queries

KOC_STEP = "koc"


@dataclass(frozen=True)
class Candidate:
    account_id: str
    customer_id: int
    name: str
    stage: str
    orders: int = 0
    referrals: int = 0
    messages: int = 0

    def why(self, engaged_days: int) -> str:
        """Why a customer is a candidate, in the rep's words."""
        reasons = []
        if self.orders:
            reasons.append(f"下单{self.orders}次")
        if self.referrals:
            reasons.append(f"转介绍{self.referrals}次")
        if self.messages:
            reasons.append(f"近{engaged_days}天发了{self.messages}条消息")
        return "、".join(reasons)


class KocService:
    def __init__(self, db: Database, clock: Clock, config: Config) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.pipeline = Pipeline(config.stages)
        # None: the pipeline has no KOC stage; candidates are listed, nobody is promoted
        self.stage = self.pipeline.stage_of_step(KOC_STEP)

    def _before_koc(self) -> list[str]:
        """Stages a candidate may be in: before the KOC stage (there, they are KOCs already)."""
        stages = self.pipeline.stages
        return [s.key for s in stages if self.stage is None or self.pipeline.is_before(s.key, self.stage)]

    async def candidates(
        self, session: AsyncSession, account_ids: Collection[str], *, customer_id: int | None = None
    ) -> dict[str, list[Candidate]]:
        """Each account's candidates (those who meet any rule), oldest customer first."""
        rules = self.config.koc
        accounts, stages = list(account_ids), self._before_koc()
        measures: dict[str, dict[int, int]] = {}
        if rules.min_orders:
            measures["orders"] = await queries.counts_at_least(
                session, accounts, stages, "order", rules.min_orders, customer_id=customer_id
            )
        if rules.min_referrals:
            measures["referrals"] = await queries.counts_at_least(
                session, accounts, stages, "referral", rules.min_referrals, customer_id=customer_id
            )
        if rules.min_messages:
            ordered = self.config.pipeline.order_stage
            bought = [s for s in stages if not self.pipeline.is_before(s, ordered)]
            measures["messages"] = await queries.counts_at_least(
                session,
                accounts,
                bought,
                "message_in",
                rules.min_messages,
                since=self.clock.now() - timedelta(days=rules.engaged_days),
                customer_id=customer_id,
            )
        ids = {i for counts in measures.values() for i in counts}
        found: dict[str, list[Candidate]] = defaultdict(list)
        for account_id, cid, name, remark, stage in await queries.named(session, ids):
            counts = {measure: values.get(cid, 0) for measure, values in measures.items()}
            found[account_id].append(
                Candidate(account_id, cid, clip(remark or name, MAX_NAME_CHARS), stage, **counts)
            )
        return dict(found)

    async def of_account(self, account_id: str) -> list[Candidate]:
        async with self.db.transaction() as session:
            return (await self.candidates(session, [account_id])).get(account_id, [])

    async def promote_hint(self, session: AsyncSession, customer: Customer) -> str:
        """One sentence when this customer is (now) a KOC candidate: why, and the /stage that
        promotes them; "" otherwise."""
        assert customer.id is not None
        found = await self.candidates(session, [customer.account_id], customer_id=customer.id)
        mine = found.get(customer.account_id, [])
        if not mine:
            return ""
        why = mine[0].why(self.config.koc.engaged_days)
        if self.stage is None:
            return f"TA已是KOC候选（{why}）。"
        return f"TA已是KOC候选（{why}），可以 /stage {self.pipeline.label(self.stage)} @#{customer.id}。"
