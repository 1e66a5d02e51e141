"""Rep commands: every command's success and failure paths, who may run them, which customer they
act on, recall in customer chats, and the generated help."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.commands import REGISTRY
from bot.commands.help import markdown_table
from bot.config import Config
from bot.errors import ConfigError
from storage.models import Customer, CustomerTag, Event, Note, StageChange
from tests.conftest import MONDAY_10AM, ROOT, make_config
from tests.harness import Harness


@pytest.fixture
async def two(sim: Harness) -> Harness:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    return sim


# -- help ---------------------------------------------------------------------------------------


async def test_help_lists_every_registered_command(sim: Harness) -> None:
    text = await sim.rep("/help")
    for cmd in REGISTRY:
        assert cmd.usage in text and cmd.summary in text
    assert await sim.rep("/帮助") == text


async def test_help_for_one_command_and_did_you_mean(sim: Harness) -> None:
    detail = await sim.rep("/help tag")
    assert "/tag <标签> [标签...]" in detail and "/标签" in detail
    assert await sim.rep("/help /阶段") == await sim.rep("/help stage")
    assert "你是不是想找 /stage" in await sim.rep("/help stag")


def test_readme_command_table_is_generated_from_the_registry() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table(REGISTRY) in readme, "README is stale: paste the output of `salesbot commands`"


async def test_unknown_command_suggests_the_closest(sim: Harness) -> None:
    assert "未知命令 /tga。你是不是想用 /tag？" in await sim.rep("/tga 预算:30w")
    assert "发送 /help" in await sim.rep("/xyzzy")


@pytest.mark.parametrize(
    "line", ["/tag", "/untag", "/stage", "/note", "/find", "/pick", "/pick two", "/stages x", "/koc x"]
)
async def test_malformed_command_gets_its_usage_line(two: Harness, line: str) -> None:
    cmd = REGISTRY.find(line.split()[0][1:])
    assert cmd is not None
    reply = await two.rep(line + (" @张三" if cmd.needs_customer else ""))
    assert reply.endswith(f"用法：{cmd.usage}")


# -- tags ---------------------------------------------------------------------------------------


async def test_tag_free_text_and_groups_with_aliases(two: Harness) -> None:
    reply = await two.rep("/tag @张三 预算:20-30w 喜欢SUV 职业：医生")
    assert reply.startswith("【张三 #")
    assert "已添加标签：消费:20-30万、喜欢SUV、社会:医生" in reply
    tags = {(t.group, t.value): t for t in await two.rows(CustomerTag)}
    assert set(tags) == {("consumption", "20-30万"), ("", "喜欢SUV"), ("social", "医生")}
    tag = tags[("", "喜欢SUV")]
    assert (tag.source, tag.added_by, tag.added_at) == (
        "manual",
        "demo-self",
        MONDAY_10AM + timedelta(minutes=1),
    )
    assert "已有标签：喜欢SUV" in await two.rep("/tag @张三 喜欢SUV")
    assert len(await two.rows(Event, Event.kind == "tag_added")) == 3


async def test_a_refused_tag_is_named_with_its_reason_and_the_others_are_added(two: Harness) -> None:
    reply = await two.rep("/tag @张三 层级:A 职业:教师 预算:25万")
    assert reply.splitlines() == [
        "【张三 #1 · 陌生】",
        "有 1 个标签没有添加：",
        "· “预算:25万”：「消费」没有「25万」这个选项，可选：10万以下、10-20万、20-30万、30-50万、50万以上",
        "已添加标签：层级:A、社会:教师",
    ]
    assert {(t.group, t.value) for t in await two.rows(CustomerTag)} == {("tier", "A"), ("social", "教师")}


async def test_when_every_tag_is_refused_nothing_is_added(two: Harness) -> None:
    reply = await two.rep("/tag @张三 层级:Z")
    assert reply == "标签没有添加：\n· “层级:Z”：「层级」没有「Z」这个选项，可选：A、B、C"
    reply = await two.rep("/tag @张三 层级:Z " + "长" * 31)
    assert reply.startswith("2 个标签都没有添加：") and "标签太长（31 个字），最多 30 个字" in reply
    assert await two.rows(CustomerTag) == []


async def test_a_tag_with_nothing_before_or_after_its_colon_is_refused(two: Harness) -> None:
    reply = await two.rep("/tag @张三 渠道: :x 预算： 喜欢SUV")
    assert "“渠道:”：「渠道」后面要写上内容，如 渠道:值" in reply
    assert "“:x”：冒号前要写分组名，如 预算:20-30万；不分组的标签不要带冒号" in reply
    assert "“预算：”：「消费」后面要写上内容，如 消费:值" in reply
    assert reply.endswith("已添加标签：喜欢SUV")
    assert {(t.group, t.value) for t in await two.rows(CustomerTag)} == {("", "喜欢SUV")}


async def test_untag(two: Harness) -> None:
    await two.rep("/tag @张三 预算:20-30万 喜欢SUV")
    assert "已删除标签：消费:20-30万" in await two.rep("/untag 消费:20-30万")
    assert [t.value for t in await two.rows(CustomerTag)] == ["喜欢SUV"]
    assert "客户没有标签「消费:20-30万」" in await two.rep("/untag 预算:20-30万")


async def test_tags_sync_to_platform_when_enabled(db_url: str) -> None:
    config = make_config({"tags": {"sync_to_platform": True}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"))
        await sim.rep("/tag @张三 预算:20-30万")
        assert await sim.puppet.contact_tag_ids("wx_c1") == ["消费:20-30万"]
        await sim.rep("/untag 预算:20-30万")
        assert await sim.puppet.contact_tag_ids("wx_c1") == []


async def test_tags_are_not_synced_by_default(two: Harness) -> None:
    await two.rep("/tag @张三 预算:20-30万")
    assert await two.puppet.contact_tag_ids("wx_c1") == []


# -- stages -------------------------------------------------------------------------------------


async def test_stage_by_key_or_label_is_recorded_with_actor(two: Harness) -> None:
    assert "阶段：陌生 → 意向" in await two.rep("/stage @张三 意向")
    assert "阶段：意向 → 下单" in await two.rep("/阶段 ordered")
    c1 = await two.customer("c1")
    assert c1.stage == "ordered"
    changes = await two.rows(StageChange, StageChange.customer_id == c1.id)
    assert [(c.from_stage, c.to_stage, c.actor) for c in changes] == [
        (None, "stranger", "system"),
        ("stranger", "intent", "demo-self"),
        ("intent", "ordered", "demo-self"),
    ]


async def test_stage_errors_change_nothing(two: Harness) -> None:
    reply = await two.rep("/stage @张三 vip")
    assert "没有阶段「vip」" in reply and "陌生 → 潜在 → 意向" in reply
    assert "客户已经在「陌生」阶段" in await two.rep("/stage @张三 陌生")
    assert (await two.customer("c1")).stage == "stranger"
    assert len(await two.rows(StageChange)) == 2  # the two "new friend" records only


async def test_stages_lists_pipeline_with_counts(two: Harness) -> None:
    await two.rep("/stage @李四 intent")
    text = await two.rep("/stages")
    assert (
        "1. 陌生：1 人" in text
        and "3. 意向：1 人" in text
        and "6. KOC：0 人" in text
        and "stranger" not in text
    )


async def test_first_customer_reply_moves_stranger_to_potential(two: Harness) -> None:
    await two.customer_says("c1", "你好")
    await two.customer_says("c1", "在吗")
    assert (await two.customer("c1")).stage == "potential"
    [auto] = await two.rows(StageChange, StageChange.reason == "first reply")
    assert auto.actor == "system"


async def test_first_reply_never_moves_a_customer_back(two: Harness) -> None:
    await two.rep("/stage @张三 intent")
    await two.customer_says("c1", "你好")
    assert (await two.customer("c1")).stage == "intent"


async def test_first_reply_move_can_be_turned_off(db_url: str) -> None:
    async with Harness(
        make_config({"pipeline": {"on_first_reply": ""}}), MONDAY_10AM, database_url=db_url
    ) as sim:
        await sim.with_customers(("c1", "张三"))
        await sim.customer_says("c1", "你好")
        assert (await sim.customer("c1")).stage == "stranger"


def test_first_reply_stage_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.on_first_reply: unknown stage 'hot'"):
        make_config({"pipeline": {"on_first_reply": "hot"}})


# -- notes, cards, find -------------------------------------------------------------------------


async def test_note_is_stored_with_author(two: Harness) -> None:
    assert "已记录备注：周六 带家人 来试驾" in await two.rep("/note @李四 周六 带家人 来试驾")
    [note] = await two.rows(Note)
    assert (note.text, note.author) == ("周六 带家人 来试驾", "demo-self")


async def test_info_card_shows_everything(sim: Harness) -> None:
    await sim.friend_request("c1", "张三", "小红书看到的")
    card = await sim.rep("/info @张三")  # before the welcome is sent: it is pending
    assert "待发消息：" in card and "欢迎语" in card
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "多少钱")
    await sim.rep("/tag @张三 预算:20-30万 喜欢SUV")
    await sim.rep("/note 想要七座")
    card = await sim.rep("/客户")
    assert card.startswith("【张三 #1 · 潜在】")
    for part in (
        "阶段：潜在",
        "渠道：小红书",
        "消费：20-30万",
        "其他：喜欢SUV",
        "来源：小红书",
        "添加时间：2026-11-23 10:00",
        "最近联系：客户 2026-11-23 10:01",
        "想要七座",
        "待发消息：无",
    ):
        assert part in card, f"{part!r} missing from card:\n{card}"


async def test_find_by_name_tag_stage_and_pages(db_url: str) -> None:
    async with Harness(make_config({"commands": {"page_size": 2}}), MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"), ("c2", "张三丰"), ("c3", "张小三"), ("c4", "李四"))
        await sim.rep("/tag @李四 预算:20-30万")
        await sim.rep("/stage @李四 intent")
        first = await sim.rep("/find 三")
        assert "找到 3 位客户（第 1/2 页）" in first and "下一页：/find 三 2" in first
        second = await sim.rep("/find 三 2")
        assert "张小三" in second and "第 2/2 页" in second
        assert "#4 李四（意向）" in await sim.rep("/find 预算:20-30万")
        assert "#4 李四" in await sim.rep("/find 意向")
        assert "没有找到与「王五」相关的客户" in await sim.rep("/find 王五")
        assert "只有 2 页结果" in await sim.rep("/find 三 5")


# -- which customer -----------------------------------------------------------------------------


async def test_at_name_by_remark_and_short_id(two: Harness) -> None:
    await two.puppet.contact_alias("wx_c2", "李总")
    await two.customer_says("c2", "你好")  # the remark is picked up from the contact
    assert (await two.rep("/info @李总")).startswith("【李总 #2")
    assert (await two.rep("/info @#1")).startswith("【张三 #1")
    assert (await two.rep('/note 周六到店 @"李总"')).startswith("【李总 #2")


async def test_ambiguous_name_gets_a_pick_list_never_a_guess(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "张三丰"))
    listing = await sim.rep("/tag @张 VIP")
    assert "1. 张三 #1" in listing and "2. 张三丰 #2" in listing and "/pick" in listing
    assert await sim.rows(CustomerTag) == []
    assert "请输入 1 到 2 之间的编号" in await sim.rep("/pick 3")
    assert (await sim.rep("/pick 2")).startswith("【张三丰 #2")
    [tag] = await sim.rows(CustomerTag)
    assert (tag.customer_id, tag.value) == (2, "VIP")
    assert "没有待选择的客户列表" in await sim.rep("/pick 1")


async def test_exact_name_wins_over_substring(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "张三丰"))
    assert (await sim.rep("/info @张三")).startswith("【张三 #1")


async def test_unknown_name_and_no_current_customer(sim: Harness) -> None:
    assert "没有找到客户「王五」" in await sim.rep("/info @王五")
    assert "请指定客户" in await sim.rep("/info")


async def test_current_customer_is_the_last_one_the_rep_acted_on(two: Harness) -> None:
    # both were welcomed: the bot reporting on a customer never makes them current
    assert "请指定客户" in await two.rep("/info")
    await two.rep("/note @张三 hello")
    assert (await two.rep("/info")).startswith("【张三")
    await two.new_customer("c3", "王五")  # a welcome
    await two.customer_says("c2", "太贵了")  # a suggestion about 李四
    await two.customer_says("c2", "退订")  # an alert about 李四
    assert (await two.rep("/stage 意向")).startswith("【张三 #1 · 意向】")
    assert "没有阶段" in await two.rep("/stage 不存在 @李四")
    assert (await two.rep("/stage 意向")).startswith("【李四 #2 · 意向】"), "a failed command names whom"


# -- where commands are typed -------------------------------------------------------------------


async def test_command_in_customer_chat_is_recalled_and_answered_in_console(two: Harness) -> None:
    before = len(two.output)
    await two.rep_types("/stage 意向", in_chat="c2")
    [reply] = two.output[before:]
    assert reply["to"] == "console" and reply["kind"] == "command_reply"
    assert reply["text"].startswith("【李四 #2 · 意向】")
    command_id = next(m for m in two.puppet._messages.values() if m.text == "/stage 意向").id
    assert command_id in two.puppet.recalled
    assert [s.conversation_id for s in two.puppet.sent if s.text == reply["text"]] == ["filehelper"]


async def test_recall_can_be_turned_off(db_url: str) -> None:
    config = make_config({"commands": {"recall_in_customer_chat": False}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"))
        await sim.rep("/note 见过面", in_chat="c1")
        assert sim.puppet.recalled == set()


@pytest.mark.parametrize("cmd", list(REGISTRY), ids=lambda c: c.name)
async def test_a_customer_can_never_run_a_command(two: Harness, cmd: Any) -> None:
    before_output = len(two.output)
    tags_before = await two.rows(CustomerTag)
    for alias in (cmd.name, *cmd.aliases):
        await two.customer_says("c1", f"/{alias} koc @李四 层级:A 1")
    assert [m for m in two.output[before_output:] if m["kind"] == "command_reply"] == [], "no command reply"
    assert {c.stage for c in await two.rows(Customer)} <= {"stranger", "potential"}
    assert await two.rows(CustomerTag) == tags_before
    assert await two.rows(Note) == []
    logged = await two.rows(Event, Event.kind == "message_in")
    assert len(logged) == 1 + len(cmd.aliases), "logged as ordinary customer messages"
    assert await two.rows(Event, Event.kind == "command") == []


async def test_configured_admin_runs_commands_in_their_own_chat(db_url: str) -> None:
    base = make_config().accounts[0].model_dump(mode="json")
    config = make_config({"accounts": [{**base, "admins": ["wx_boss"]}]})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"))
        sim.puppet.add_contact("wx_boss", "王经理", friend=True)
        await sim.customer_says("boss", "/stage @张三 intent", name="王经理")
        [reply] = sim.sent("command_reply")
        assert reply["to"] == "boss" and "阶段：陌生 → 意向" in reply["text"]
        [change] = await sim.rows(StageChange, StageChange.to_stage == "intent")
        assert change.actor == "wx_boss"


async def test_console_in_a_named_room(db_url: str) -> None:
    base = make_config().accounts[0].model_dump(mode="json")
    config = make_config({"accounts": [{**base, "console": "room:销售战队"}]})
    sim = Harness(config, MONDAY_10AM, database_url=db_url)
    room_id = sim.puppet.create_room("销售战队", [])
    async with sim:
        await sim.with_customers(("c1", "张三"))
        reply = await sim.rep("/info @张三")
        assert reply.startswith("【张三")
        assert sim.puppet.sent[-1].conversation_id == room_id
        await sim.rep_types("/stage intent", in_chat="c1")
        assert sim.puppet.sent[-1].conversation_id == room_id


async def test_missing_console_room_fails_at_startup(db_url: str) -> None:
    base = make_config().accounts[0].model_dump(mode="json")
    config = make_config({"accounts": [{**base, "console": "room:不存在的群"}]})
    sim = Harness(config, MONDAY_10AM, database_url=db_url)
    with pytest.raises(
        ConfigError, match=r"accounts\.demo\.console: the account is in no group chat named '不存在的群'"
    ):
        async with sim:
            pass
    await sim.bot.db.close()  # the start failed, so no stop() closed the database's connections


async def test_self_chat_console(db_url: str) -> None:
    base = make_config().accounts[0].model_dump(mode="json")
    config = make_config({"accounts": [{**base, "console": "self"}]})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"))
        assert (await sim.rep("/info @张三")).startswith("【张三")
        assert sim.puppet.sent[-1].conversation_id == "demo-self"


async def test_rep_writing_to_a_customer_counts_as_contact_but_bot_echoes_do_not(two: Harness) -> None:
    welcome_echoes = await two.rows(Event, Event.kind == "rep_message")
    assert welcome_echoes == [], "the bot's own welcome echoed back must not look like the rep writing"
    await two.advance(timedelta(hours=1))
    await two.rep_types("您好，周六有空来试驾吗？", in_chat="c1")
    [event] = await two.rows(Event, Event.kind == "rep_message")
    assert event.text == "您好，周六有空来试驾吗？"
    assert (await two.customer("c1")).last_outbound_at == MONDAY_10AM + timedelta(hours=1, minutes=1)
    assert two.puppet.recalled == set(), "ordinary messages are never recalled"


async def test_commands_are_logged(two: Harness) -> None:
    await two.rep("/stage @张三 intent")
    await two.rep("/stage @张三 nope")
    logged = await two.rows(Event, Event.kind == "command")
    assert [(e.text, e.data["ok"]) for e in logged] == [
        ("stage @张三 intent", True),
        ("stage @张三 nope", False),
    ]


def test_config_channel_tag_must_fit_the_vocabulary(config: Config) -> None:
    from bot.app import validate_setup

    rules = [r.model_dump() for r in config.welcome.channels]
    rules[0]["tag"] = "层级:Z"
    with pytest.raises(ConfigError, match=r"welcome.channels.0.tag: 「层级」没有「Z」"):
        validate_setup(make_config({"welcome": {"channels": rules}}))
