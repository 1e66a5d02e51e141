"""/scripts, /use and /scripts stats: browsing the script library, sending a script to the current
customer the way /send does, and which scripts work."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.commands import REGISTRY
from bot.config import load_config
from bot.domain.display import play_name
from bot.playbook.library import PLAYS
from bot.services import script_library
from bot.services.script_library import LISTED, PAGE
from storage.models import Event, ScheduledMessage
from tests.conftest import MONDAY_10AM, ROOT, make_config
from tests.harness import Harness

USAGE = "用法：/use <编号> [追加文字]"


def internal_words(text: str) -> list[str]:
    """Latin words a rep should not read: keys, ids (the commands' own names are fine)."""
    allowed = {"scripts", "use", "stats", "send", "KOC", "info"}
    return [w for w in re.findall(r"[A-Za-z_][A-Za-z_\-]+", text) if w not in allowed]


async def listed(sim: Harness) -> list[str]:
    """The script ids of the rep's latest listing, in the order they were numbered."""
    events = await sim.rows(Event, Event.kind == LISTED)
    return [str(i) for i in max(events, key=lambda e: e.id or 0).data["scripts"]]


def numbered(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"^(\d+)\. ", text, re.MULTILINE)]


# -- /scripts -----------------------------------------------------------------------------------


async def test_scripts_without_filter_lists_every_script_grouped_and_paged(sim: Harness) -> None:
    text = await sim.rep("/scripts")
    library = sim.bot.objections.library
    playbook = sim.bot.objections.playbook.scripts(vertical="cars")  # the demo account sells cars
    total = sum(len(o.scripts) for o in library.objections.values()) + len(playbook)
    total += sum(len(s) for s in library.signal_scripts.values())
    assert text.startswith(f"全部话术（共 {total} 条，第 1/")
    assert numbered(text) == list(range(1, PAGE + 1))
    assert text.splitlines()[1] == "【挖掘需求】", "grouped by the step of the process, in its order"
    assert "【强化需求】" in text
    ids = await listed(sim)
    assert ids[0].startswith("cars-"), "the account's own vertical first"
    assert not any(i.startswith(("education-", "skincare-")) for i in ids), "no other business's scripts"
    assert ids.index("price-value-first") > max(ids.index(s.id) for s in playbook), "then doubts"
    assert "发 /scripts 2 看下一页" in text and "发 /use 编号" in text
    assert internal_words(text) == [], text
    assert len(await listed(sim)) == total
    second = await sim.rep("/话术 2")
    assert numbered(second) == list(range(PAGE + 1, 2 * PAGE + 1)), "numbers run on across pages"
    assert len(await sim.rows(Event, Event.kind == LISTED)) == 1, "a page of the same list keeps its numbers"
    assert "没有第 99 页" in await sim.rep("/scripts 99")


async def test_scripts_for_a_stage_by_label_or_key(sim: Harness) -> None:
    text = await sim.rep("/scripts 意向")
    assert text.startswith("适合「意向」阶段的话术")
    ids = await listed(sim)
    library = sim.bot.objections.library
    playbook = sim.bot.objections.playbook
    scripts = [library.script(i) or playbook.script(i) for i in ids]
    for script in scripts:
        assert script is not None and (not script.stages or "intent" in script.stages), script
    assert any(s.stages for s in scripts if s is not None), "scripts made for the stage are listed"
    assert "【方案】" in text, "the playbook's proposals fit intent"
    assert internal_words(text) == [], text
    assert (await sim.rep("/scripts intent")) == text


async def test_scripts_for_a_doubt_by_its_chinese_name(sim: Harness) -> None:
    text = await sim.rep("/scripts 价格")
    price = sim.bot.objections.library.objections["price"]
    assert text.startswith(f"「价格」话术（共 {len(price.scripts)} 条）")
    assert await listed(sim) == [s.id for s in price.scripts]
    assert "下一页" not in text and internal_words(text) == []


async def test_scripts_for_a_step_of_the_process_by_its_chinese_name(sim: Harness) -> None:
    text = await sim.rep("/scripts 挖掘需求")
    discovery = sim.bot.objections.playbook.scripts(vertical="cars", play="discovery")
    assert text.startswith(f"「挖掘需求」话术（共 {len(discovery)} 条）")
    assert await listed(sim) == [s.id for s in discovery]
    assert f"1. {discovery[0].title}：" in text, "a playbook script shows its title, then its opening"
    assert internal_words(text) == [], text


async def test_scripts_by_keyword_in_the_text(sim: Harness) -> None:
    text = await sim.rep("/scripts 分期")
    assert text.startswith("含「分期」的话术")
    ids = await listed(sim)
    assert ids
    for script_id in ids:
        script = sim.bot.objections.library.script(script_id) or sim.bot.objections.playbook.script(script_id)
        assert script is not None and "分期" in script.text
    assert "【挖掘需求】" in text and "【预算】" in text, "both libraries are searched"
    titled = await sim.rep("/scripts 试驾")
    assert "邀约试驾" in titled


async def test_unknown_filter_says_what_filters_exist(sim: Harness) -> None:
    reply = await sim.rep("/scripts 火星探险")
    assert reply.startswith("没有找到与「火星探险」有关的话术")
    assert "意向" in reply and "价格" in reply, "the stages and steps a rep can filter by"
    assert internal_words(reply) == []
    assert await sim.rows(Event, Event.kind == LISTED) == [], "nothing listed: no numbers to /use"


# -- /use ---------------------------------------------------------------------------------------


async def test_use_sends_to_the_current_customer_after_a_pause_once(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.rep("/info @张三")  # 张三 is the current customer
    await sim.rep("/scripts 价格")
    script_id = (await listed(sim))[1]
    ack = await sim.rep("/use 2 周末来店里我请喝咖啡")
    assert ack.startswith("【张三 #1") and "已安排发送话术 2「" in ack and "秒后" in ack
    assert sim.sent("reply") == [], "a human-like pause first"
    again = await sim.rep("/使用 2")
    assert again.startswith("话术 2「") and again.endswith("」已经发给【张三 #1】了")
    await sim.advance(timedelta(seconds=10))
    [reply] = sim.sent("reply")
    library = sim.bot.objections.library
    body = sim.bot.objections.render_script(library.script(script_id), "demo", await sim.customer("c1"))  # type: ignore[arg-type]
    assert reply["to"] == "c1" and reply["text"] == f"{body}\n周末来店里我请喝咖啡"
    assert len(await sim.rows(ScheduledMessage, ScheduledMessage.kind == "reply")) == 1
    [sent] = await sim.rows(Event, Event.kind == "script_sent")
    assert sent.data == {"script_id": script_id, "label": "price", "stage": "stranger"}
    # another customer may get the same script from the same list
    await sim.rep("/use 2 @李四")
    await sim.advance(timedelta(seconds=10))
    assert [m["to"] for m in sim.sent("reply")] == ["c1", "c2"]


async def test_use_sends_a_playbook_script(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/info @张三")
    await sim.rep("/scripts 挖掘需求")
    first = sim.bot.objections.playbook.scripts(vertical="cars", play="discovery")[0]
    ack = await sim.rep("/use 1")
    assert f"已安排发送话术 1「{first.title}」" in ack
    await sim.advance(timedelta(seconds=10))
    [reply] = sim.sent("reply")
    assert reply["to"] == "c1" and reply["text"].startswith("张三，想先了解下您平时用车")
    [sent] = await sim.rows(Event, Event.kind == "script_sent")
    assert sent.data == {"script_id": first.id, "label": "discovery", "stage": "potential"}
    await sim.rep("/stage 意向")
    stats = await sim.rep("/scripts stats")
    assert f"1. 【挖掘需求】{first.title}：发送 1 次，成功 1 次，成功率 100%" in stats


async def test_use_without_a_current_customer(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep("/scripts 价格")
    reply = await sim.rep("/use 1")
    assert reply.startswith("还没有当前客户") and reply.endswith(USAGE)
    assert await sim.rows(ScheduledMessage, ScheduledMessage.kind == "reply") == []


async def test_use_typed_in_the_customer_chat_goes_to_that_customer(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.rep("/info @张三")
    await sim.rep("/scripts 价格")
    await sim.rep_types("/use 1", in_chat="c2")
    await sim.advance(timedelta(seconds=10))
    assert [m["to"] for m in sim.sent("reply")] == ["c2"]


async def test_use_with_an_unknown_or_stale_number(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep("/info @张三")
    reply = await sim.rep("/use 1")
    assert reply.startswith("还没有话术列表") and reply.endswith(USAGE)
    await sim.rep("/scripts 价格")
    reply = await sim.rep("/use 99")
    assert "没有编号 99" in reply and reply.endswith(USAGE)
    assert (await sim.rep("/use one")) == USAGE
    assert (await sim.rep("/use")) == USAGE
    await sim.advance(timedelta(days=1, minutes=1))
    reply = await sim.rep("/use 1")
    assert "已失效" in reply and reply.endswith(USAGE)
    assert await sim.rows(ScheduledMessage, ScheduledMessage.kind == "reply") == []


async def test_use_works_after_a_restart(db_url: str) -> None:
    config = make_config()
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await first.new_customer()
        await first.rep("/scripts 价格")
        expected = (await listed(first))[2]
    async with Harness(config, MONDAY_10AM + timedelta(minutes=5), database_url=db_url) as second:
        second.puppet.add_contact("wx_c1", "张三", friend=True)
        second.handles["wx_c1"] = "c1"
        await second.rep("/use 3 @张三")
        await second.advance(timedelta(seconds=10))
        [reply] = second.sent("reply")
        service = second.bot.objections
        script = service.library.script(expected)
        assert script is not None
        assert reply["text"] == service.render_script(script, "demo", await second.customer("c1"))


def test_usage_lines_are_registered() -> None:
    for name in ("scripts", "use", "话术", "使用"):
        assert REGISTRY.find(name) is not None


# -- /scripts stats -----------------------------------------------------------------------------


async def test_stats_count_stage_moves_and_orders_after_use_and_send(sim: Harness) -> None:
    assert (await sim.rep("/scripts stats")).startswith("还没有发出过话术")
    for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五"), ("c4", "赵六")):
        await sim.customer_in_chat(handle, name)  # replied once: at the second stage already
    await sim.rep("/scripts 价格")
    await sim.rep("/use 1 @张三")
    await sim.rep("/use 1 @李四")
    await sim.rep("/use 2 @王五")
    await sim.advance(timedelta(seconds=10))
    await sim.rep("/stage @张三 意向")  # /use 1 worked once in two sends
    await sim.rep("/order @王五")  # an order after /use 2
    await sim.customer_says("c4", "太贵了")
    third = numbered(sim.sent("suggestion")[-1]["text"])[2]
    await sim.rep(f"/send {third}")  # /send to 赵六, who then orders
    await sim.advance(timedelta(seconds=10))
    await sim.rep("/order @赵六")
    text = await sim.rep("/scripts stats")
    assert text.startswith("话术效果（发出后 14 天内客户升阶段或下单算成功")
    lines = numbered(text)
    assert lines == list(range(1, len(lines) + 1))
    assert "发送 1 次，成功 1 次，成功率 100%" in text
    assert "发送 2 次，成功 1 次，成功率 50%" in text
    rates = [int(r) for r in re.findall(r"成功率 (\d+)%", text)]
    assert rates == sorted(rates, reverse=True), "ranked by success rate"
    assert "（发送不到 5 次，仅供参考）" in text, "a rate from few sends is marked"
    assert "【价格】" in text and internal_words(text) == [], text


async def test_stats_are_paged_like_the_listing(sim: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rep who follows the listing's habit (/scripts 意向 2) gets the second page of the stats,
    not "no script about 'stats'"."""
    monkeypatch.setattr(script_library, "STATS_SHOWN", 1)
    await sim.customer_in_chat()
    await sim.rep("/scripts 价格")
    await sim.rep("/use 1 @张三")
    await sim.rep("/use 2 @张三")
    await sim.advance(timedelta(seconds=10))
    first = await sim.rep("/scripts stats")
    assert numbered(first) == [1] and first.splitlines()[-1] == "还有 1 条：发 /scripts stats 2 看下一页"
    second = await sim.rep("/scripts stats 2")
    assert second.startswith("话术效果（") and numbered(second) == [2] and "下一页" not in second
    assert await sim.rep("/话术 统计 3") == "话术效果共 2 页，没有第 3 页"


async def test_stats_rank_scripts_sent_often_enough_first(db_url: str) -> None:
    config = make_config({"objections": {"min_sends_for_ranking": 2}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        for handle, name in (("c1", "张三"), ("c2", "李四"), ("c3", "王五")):
            await sim.customer_in_chat(handle, name)
        await sim.rep("/scripts 价格")
        await sim.rep("/use 1 @张三")
        await sim.rep("/use 1 @李四")
        await sim.rep("/use 2 @王五")
        await sim.advance(timedelta(seconds=10))
        await sim.rep("/order @张三")
        await sim.rep("/order @王五")
        lines = (await sim.rep("/scripts stats")).splitlines()[1:]
        assert "发送 2 次，成功 1 次，成功率 50%" in lines[0], "two sends outrank one lucky send"
        assert "发送 1 次，成功 1 次，成功率 100%（发送不到 2 次，仅供参考）" in lines[1]


async def test_an_order_without_a_stage_move_counts_as_a_success(sim: Harness) -> None:
    await sim.new_customer()
    await sim.bot.profile.set_stage(1, "koc", "test")  # already at the last stage: an order moves nothing
    await sim.rep("/info @张三")
    await sim.rep("/scripts 价格")
    await sim.rep("/use 1")
    await sim.advance(timedelta(seconds=10))
    await sim.rep("/order 年卡")
    async with sim.bot.db.transaction() as session:
        stats = await sim.bot.objections.script_stats(session)
    [only] = stats.values()
    assert (only.sent, only.succeeded) == (1, 1)


# -- another business -------------------------------------------------------------------------------


async def test_a_school_browses_its_own_stages_and_vertical(db_url: str) -> None:
    education = load_config(ROOT / "examples" / "education" / "config.toml")
    accounts = [a.model_copy(update={"vertical": "education"}) for a in education.accounts]
    school = education.model_copy(update={"accounts": accounts})
    async with Harness(school, MONDAY_10AM, database_url=db_url) as sim:
        text = await sim.rep("/scripts 试听")  # the business's own stage, the library's "intent" step
        assert text.startswith("适合「试听」阶段的话术")
        ids = await listed(sim)
        assert "price-direct-question" in ids, "objection scripts written for the intent step"
        playbook = [i for i in ids if sim.bot.objections.playbook.script(i) is not None]
        assert playbook and not any(i.startswith("cars-") for i in playbook)
        assert any(i.startswith("education-") for i in playbook)
        referrers = await sim.rep("/scripts 转介绍")  # a stage here, and a step of that name
        assert referrers.startswith("适合「转介绍」阶段或「转介绍」步骤的话术")
        assert "既是阶段也是步骤" in referrers
        ids = await listed(sim)
        assert "education-referral-ask-classmates" in ids, "the step's scripts for an earlier stage too"
        assert "general-reactivate-care" in ids, "the stage's scripts of other steps"
        assert internal_words(text + referrers) == []


async def test_asking_for_a_referral_and_thanking_for_one_are_separate_groups(sim: Harness) -> None:
    both = await sim.rep("/scripts 转介绍")
    assert "【转介绍·邀请】" in both and "【转介绍·致谢】" in both and "【转介绍】" not in both
    asking = sim.bot.objections.playbook.scripts(vertical="cars", play="referral_ask")
    thanking = sim.bot.objections.library.signal_scripts["referral"]
    assert await listed(sim) == [s.id for s in asking] + [s.id for s in thanking]
    only = await sim.rep("/scripts 转介绍·致谢")
    assert only.startswith(f"「转介绍·致谢」话术（共 {len(thanking)} 条）")
    assert await listed(sim) == [s.id for s in thanking]


async def test_filters_combine_each_word_narrowing(sim: Harness) -> None:
    text = await sim.rep("/scripts 意向 价格")
    assert text.startswith("适合「意向」阶段的「价格」话术"), text
    price = sim.bot.objections.library.objections["price"].scripts
    ids = await listed(sim)
    assert ids and set(ids) == {s.id for s in price if not s.stages or "intent" in s.stages}
    narrower = await sim.rep("/scripts 意向 价格 算一笔账")
    assert narrower.startswith("适合「意向」阶段、含「算一笔账」的「价格」话术")
    assert 0 < len(await listed(sim)) < len(ids)
    proposals = await sim.rep("/scripts 方案 意向")
    assert proposals.startswith("适合「意向」阶段的「方案」话术")
    none = await sim.rep("/scripts 意向 火星探险")
    assert none.startswith("没有同时符合「意向 火星探险」的话术")
    assert internal_words(text + narrower + proposals + none) == []


def test_every_step_of_the_playbook_has_a_chinese_name() -> None:
    for play in PLAYS:
        assert play_name(play) != play_name("no such step"), play


async def test_a_script_gone_from_the_library_is_named_plainly(sim: Harness) -> None:
    await sim.customer_in_chat()
    await sim.rep("/info @张三")
    await sim.rep("/scripts 价格")
    await sim.rep("/use 2")
    await sim.advance(timedelta(seconds=10))
    [listing] = await sim.rows(Event, Event.kind == LISTED)
    [sent] = await sim.rows(Event, Event.kind == "script_sent")
    listing.data = {"scripts": ["old-price-1", "old-price-2"]}  # the library was edited since
    sent.data = {**sent.data, "script_id": "old-price-2"}
    async with sim.bot.db.transaction() as session:
        session.add(listing)
        session.add(sent)
    reply = await sim.rep("/use 1")
    assert "话术 1 已不在话术库里" in reply and reply.endswith(USAGE)
    stats = await sim.rep("/scripts stats")
    assert "（已从话术库移除的话术）：发送 1 次" in stats and "old-price" not in stats


# what only a product reads right with: a school's parents neither "use" nor "bought" a course
PRODUCT_WORDS = ("用了几天", "买的", "用得怎么样", "用得满意", "入手", "基础款", "功能", "能用上")


async def test_the_general_scripts_read_right_for_a_school(db_url: str) -> None:
    config = load_config(ROOT / "examples" / "education" / "config.toml")
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        pages = [await sim.rep("/scripts 报名")]
        while "看下一页" in pages[-1]:
            pages.append(await sim.rep(f"/scripts 报名 {len(pages) + 1}"))
        shown = "\n".join(pages)
        assert "【交付价值】" in shown
        playbook = sim.bot.objections.playbook
        general = [s for s in playbook.scripts(vertical="education") if s.vertical == "general"]
        for script in general:
            for word in PRODUCT_WORDS:
                assert word not in script.text, (script.id, word)
                assert word not in script.title, (script.id, word)
        for word in PRODUCT_WORDS:
            assert word not in shown, word
