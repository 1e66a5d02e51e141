"""The script library as reps browse it: /scripts lists numbered scripts, /use N sends one, and
/scripts stats shows which scripts work.

Both libraries are browsed as one: the playbook's scripts for each step of the process (the
account's vertical first) and the objection library's replies. A listing's numbers are kept with
a ``scripts_listed`` event, so /use N picks from what the rep saw, also after a restart; /use plans
the script through :meth:`ObjectionService.plan_script`, the path /send takes (same pause, same
idempotency: the same number from the same listing goes to a customer once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.clock import Clock
from bot.config import Config
from bot.domain.display import GROUP_JOINER, listing_group, play_name, signal_name
from bot.domain.limits import MAX_ECHO_CHARS, clip
from bot.domain.stages import Pipeline
from bot.errors import CommandError
from bot.objections.library import Script
from bot.playbook.library import PLAYS, PlaybookScript
from bot.services.alerts import who
from bot.services.objections import STATS_SENDS, ObjectionService, ScriptStats, check_extra
from storage.db import Database
from storage.models import Customer, Event
from storage.repositories import Events

LISTED = "scripts_listed"
# which library a script is from, as a reply row's sequence names it (as /send's do)
PLAYBOOK, OBJECTION = "playbook", "objection"
# /use N answers a listing this long after it was shown
LISTING_OPEN = timedelta(days=1)
# a listing shows this many scripts per page; the numbers run on across pages
PAGE = 12
# a script's preview in a list
PREVIEW_CHARS = 28
# /scripts stats ranks this many scripts
STATS_SHOWN = 20
# /use looks back this far for the rep's latest listing (older than LISTING_OPEN: stale)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# what a preview calls the customer: nobody in particular (templates then say 您好)
_ANYONE = Customer(account_id="", wechat_id="", stage="")


@dataclass(frozen=True)
class Entry:
    """One script as the rep browses it (no internal key is ever shown: ``group`` and ``title``
    are Chinese)."""

    script: Script | PlaybookScript
    group: str  # the step of the process (挖掘需求) or the doubt it answers (价格)
    key: str  # the play or objection label: what /use logs, never shown
    family: str  # playbook or objection: which library (a reply row's sequence names it)
    title: str  # a playbook script's short title; "" for objection replies (the preview says it)

    @property
    def script_id(self) -> str:
        return self.script.id

    @property
    def stages(self) -> tuple[str, ...]:
        """Process steps or stage keys it suits; () any."""
        return self.script.stages


@dataclass(frozen=True)
class Ranked:
    """One line of /scripts stats."""

    name: str
    stats: ScriptStats


class ScriptLibraryService:
    def __init__(self, db: Database, clock: Clock, config: Config, objections: ObjectionService) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.objections = objections
        self.pipeline = Pipeline(config.stages)

    # -- the catalogue ------------------------------------------------------------------------------

    def entries(self, account_id: str) -> list[Entry]:
        """Every script a rep may send, in browsing order: the playbook's steps (the account's
        vertical first), then the replies to doubts and signals."""
        library = self.objections.library
        vertical = self.config.account(account_id).vertical
        found: list[Entry] = []
        for play in PLAYS:
            for item in self.objections.playbook.scripts(vertical=vertical, play=play):
                found.append(Entry(item, listing_group(play, play_name(play)), play, PLAYBOOK, item.title))
        for label, objection in library.objections.items():
            for script in objection.scripts:
                found.append(Entry(script, objection.name, label, OBJECTION, ""))
        for signal, scripts in library.signal_scripts.items():
            for script in scripts:
                found.append(Entry(script, listing_group(signal, signal_name(signal)), signal, OBJECTION, ""))
        return found

    def preview(self, entry: Entry, account_id: str) -> str:
        """The script's opening words, said to nobody in particular."""
        return clip(" ".join(self._said(entry, account_id).split()), PREVIEW_CHARS)

    def _said(self, entry: Entry, account_id: str) -> str:
        return self.objections.render_script(entry.script, account_id, _ANYONE)

    def name(self, entry: Entry, account_id: str) -> str:
        """How a list names a script: its title, else its opening words."""
        return entry.title or self.preview(entry, account_id)

    # -- /scripts -----------------------------------------------------------------------------------

    def select(self, account_id: str, wanted: str) -> tuple[list[Entry], str, str, list[str]]:
        """The scripts a filter asks for, how the heading names them, the filter in the rep's
        words (a stage key typed is named by its label) and notes on how it was read. Each word
        narrows: a stage (label or key), a step of the process or a doubt (its Chinese name, or
        the word before its "·"), else a keyword in titles and texts. A word that is both a
        stage and a step (转介绍 in a school) keeps both groups: hiding one would leave it
        reachable only by an internal key.
        No filter: everything. A filter nothing matches is a :class:`CommandError`."""
        entries = self.entries(account_id)
        words = wanted.split()
        if not words:
            return entries, "全部话术", "", []
        chosen = entries
        qualifiers: list[str] = []
        named: list[str] = []
        groups_named: list[str] = []
        notes: list[str] = []
        staged = False
        for word in words:
            stage = self.pipeline.resolve(word)
            by_group = self._in_group(entries, word)
            if stage is not None:
                staged = True
                label = self.pipeline.label(stage)
                names = set(self.pipeline.script_stages(stage))
                fitting = {id(e) for e in entries if not e.stages or names & set(e.stages)}
                if by_group:
                    group = self._group_name(by_group, word)
                    fitting |= {id(e) for e in by_group}
                    qualifiers.append(f"适合「{label}」阶段或「{group}」步骤")
                    notes.append(
                        f"「{clip(word, MAX_ECHO_CHARS)}」既是阶段也是步骤，两类都列出了："
                        f"只看某一类，可以用步骤名（{'、'.join(dict.fromkeys(e.group for e in by_group))}）"
                    )
                    named.append(word)
                else:
                    qualifiers.append(f"适合「{label}」阶段")
                    named.append(label)
                chosen = [e for e in chosen if id(e) in fitting]
            elif by_group:
                group = self._group_name(by_group, word)
                members = {id(e) for e in by_group}
                chosen = [e for e in chosen if id(e) in members]
                groups_named.append(f"「{group}」")
                named.append(group)
            else:
                folded = word.casefold()
                chosen = [
                    e
                    for e in chosen
                    if folded in e.title.casefold()
                    or folded in e.group.casefold()
                    or folded in self._said(e, account_id).casefold()
                ]
                qualifiers.append(f"含「{clip(word, MAX_ECHO_CHARS)}」")
                named.append(word)
        if not chosen:
            what = clip(" ".join(words), MAX_ECHO_CHARS)
            if len(words) == 1:
                raise CommandError(f"没有找到与「{what}」有关的话术。{self.filters_hint(account_id)}")
            raise CommandError(
                f"没有同时符合「{what}」的话术：少用一个词试试。{self.filters_hint(account_id)}"
            )
        if staged:
            order = {group: i for i, group in enumerate(dict.fromkeys(e.group for e in entries))}
            # grouped as browsing orders them; within a group the scripts made for the stage first
            chosen = sorted(chosen, key=lambda e: (order[e.group], not e.stages))
        heading = ("、".join(qualifiers) + "的" if qualifiers else "") + "".join(groups_named) + "话术"
        return chosen, heading, " ".join(named), notes

    @staticmethod
    def _in_group(entries: list[Entry], word: str) -> list[Entry]:
        """The scripts of the step or doubt a word names: the group's Chinese name, the word before
        its "·" (转介绍 for 转介绍·邀请 and 转介绍·致谢) or its key."""
        folded = word.casefold()
        return [
            e
            for e in entries
            if folded in (e.group.casefold(), e.key.casefold(), e.group.split(GROUP_JOINER)[0].casefold())
        ]

    @staticmethod
    def _group_name(members: list[Entry], word: str) -> str:
        """How a heading names the group a word picked: its name, or the word when it spans several."""
        groups = list(dict.fromkeys(e.group for e in members))
        return groups[0] if len(groups) == 1 else word

    def filters_hint(self, account_id: str) -> str:
        """What /scripts can be filtered by, in the rep's words."""
        groups = list(dict.fromkeys(e.group for e in self.entries(account_id)))
        stages = "、".join(s.label for s in self.pipeline.stages)
        example = self.pipeline.stages[min(2, len(self.pipeline.stages) - 1)].label
        kinds = "、".join(groups)
        return f"可以按阶段（{stages}）、步骤或顾虑（{kinds}）或关键词筛选，例如 /scripts {example}"

    async def listing(self, account_id: str, wanted: str, page: int) -> str:
        """One page of the scripts a filter asks for, numbered for /use (the numbers are kept)."""
        chosen, heading, named, notes = self.select(account_id, wanted)
        pages = (len(chosen) + PAGE - 1) // PAGE
        if not 1 <= page <= pages:
            raise CommandError(f"{heading}共 {pages} 页，没有第 {page} 页")
        await self._remember(account_id, wanted, [e.script_id for e in chosen])
        start = (page - 1) * PAGE
        lines = [
            f"{heading}（共 {len(chosen)} 条" + (f"，第 {page}/{pages} 页" if pages > 1 else "") + "）：",
            *notes,
        ]
        group = None
        for number, entry in enumerate(chosen[start : start + PAGE], start=start + 1):
            if entry.group != group:
                group = entry.group
                lines.append(f"【{group}】")
            body = self.preview(entry, account_id)
            lines.append(f"{number}. {entry.title}：{body}" if entry.title else f"{number}. {body}")
        if page < pages:
            more = " ".join(filter(None, ("/scripts", named, str(page + 1))))
            lines.append(f"还有 {len(chosen) - start - PAGE} 条：发 {more} 看下一页")
        lines.append("发 /use 编号 把话术发给当前客户（可在编号后追加文字）")
        return "\n".join(lines)

    async def _remember(self, account_id: str, wanted: str, script_ids: list[str]) -> int:
        """Keep the listing's numbers for /use (a page of the same list keeps the same event, so
        paging through it does not make its numbers new)."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            events = Events(session)
            last = await events.of_account(account_id, (LISTED,), now - LISTING_OPEN, 1)
            if last and last[0].data.get("scripts") == script_ids and last[0].id is not None:
                return last[0].id
            event = await events.add(
                Event(
                    account_id=account_id,
                    kind=LISTED,
                    text=clip(wanted.strip(), MAX_ECHO_CHARS),
                    data={"scripts": script_ids},
                    at=now,
                )
            )
        assert event.id is not None
        return event.id

    # -- /use ---------------------------------------------------------------------------------------

    async def use(
        self, customer: Customer, number: int, extra: str, actor: str, usage: str
    ) -> tuple[str, datetime]:
        """Plan script ``number`` of the rep's latest listing for the customer, as /send does; its
        name and when it goes out. A number no open listing shows is refused with ``usage``."""
        check_extra(extra)
        account_id = customer.account_id
        async with self.db.transaction() as session:
            listed = await Events(session).of_account(account_id, (LISTED,), EPOCH, 1)
        listing = listed[0] if listed else None
        if listing is None or listing.id is None:
            raise CommandError(f"还没有话术列表：先发 /scripts 查看话术和编号。用法：{usage}")
        if listing.at < self.clock.now() - LISTING_OPEN:
            raise CommandError(f"话术列表已超过 24 小时，编号已失效：请重新发 /scripts。用法：{usage}")
        script_ids = [str(i) for i in listing.data.get("scripts", [])]
        if not 1 <= number <= len(script_ids):
            raise CommandError(f"最近的话术列表里没有编号 {number}（共 {len(script_ids)} 条）。用法：{usage}")
        script_id = script_ids[number - 1]
        entry = next((e for e in self.entries(account_id) if e.script_id == script_id), None)
        if entry is None:
            raise CommandError(f"话术 {number} 已不在话术库里，请重新发 /scripts 查看。用法：{usage}")
        due = await self.objections.plan_script(
            customer,
            script_id,
            offer=listing.id,
            position=number,
            family=entry.family,
            label=entry.key,
            extra=extra,
            actor=actor,
        )
        if due is None:
            raise CommandError(f"话术 {number}「{self.name(entry, account_id)}」已经发给{who(customer)}了")
        return self.name(entry, account_id), due

    # -- /scripts stats -----------------------------------------------------------------------------

    async def ranking(self, account_id: str) -> list[Ranked]:
        """The account's scripts by success rate (then successes, then sends), those sent often
        enough for their rate to mean something (as suggestions rank them) first."""
        async with self.db.transaction() as session:
            stats = await self.objections.script_stats(session, account_id)
        entries = {e.script_id: e for e in self.entries(account_id)}
        ranked = []
        for script_id, counted in stats.items():
            entry = entries.get(script_id)
            name = f"【{entry.group}】{self.name(entry, account_id)}" if entry else "（已从话术库移除的话术）"
            ranked.append(Ranked(name, counted))
        minimum = self.config.objections.min_sends_for_ranking
        return sorted(
            ranked, key=lambda r: (r.stats.sent < minimum, -r.stats.rate, -r.stats.succeeded, -r.stats.sent)
        )

    async def stats_text(self, account_id: str, page: int = 1) -> str:
        ranked = await self.ranking(account_id)
        if not ranked:
            return "还没有发出过话术：用 /use 或 /send 发送后，这里会统计每条话术的效果。"
        pages = -(-len(ranked) // STATS_SHOWN)
        if not 1 <= page <= pages:
            return f"话术效果共 {pages} 页，没有第 {page} 页"
        days = self.config.objections.success_window_days
        minimum = self.config.objections.min_sends_for_ranking
        lines = [f"话术效果（发出后 {days} 天内客户升阶段或下单算成功，按成功率排序）："]
        start = (page - 1) * STATS_SHOWN
        for number, item in enumerate(ranked[start : start + STATS_SHOWN], start=start + 1):
            s = item.stats
            thin = f"（发送不到 {minimum} 次，仅供参考）" if s.sent < minimum else ""
            lines.append(
                f"{number}. {item.name}：发送 {s.sent} 次，成功 {s.succeeded} 次，成功率 {s.rate:.0%}{thin}"
            )
        left = len(ranked) - start - STATS_SHOWN
        if left > 0:
            lines.append(f"还有 {left} 条：发 /scripts stats {page + 1} 看下一页")
        sends = sum(r.stats.sent for r in ranked)
        if sends >= STATS_SENDS:
            lines.append(f"（只统计最近 {STATS_SENDS} 次发送）")
        return "\n".join(lines)
