"""What the rep and the customer see stays readable whatever is typed or received (issue 16 item 7):
stored texts have limits that are stated, echoed names and quotes are cut, every long console
message is split into a capped number of parts, and /find treats % and _ as characters."""

from __future__ import annotations

from datetime import timedelta

from bot.domain.limits import (
    MAX_AUDIT_CHARS,
    MAX_LABEL_CHARS,
    MAX_NAME_CHARS,
    MAX_NOTE_CHARS,
    MAX_PARTS,
    MAX_QUOTE_CHARS,
    TRUNCATED,
)
from storage.models import Event, Note
from tests.conftest import MONDAY_10AM, make_config
from tests.harness import Harness


async def test_a_note_over_the_limit_is_refused_with_the_limit(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"))
    reply = await sim.rep("/note @张三 " + "记" * 1_000_000)
    assert reply == f"备注太长（1000000 个字），一条备注最多 {MAX_NOTE_CHARS} 个字，请精简或分几条记"
    assert await sim.rows(Note) == []
    [audit] = await sim.rows(Event, Event.kind == "command")
    assert len(audit.text) == MAX_AUDIT_CHARS, "the audit log keeps the command line short too"
    echo = await sim.rep("/note @张三 " + "记" * MAX_NOTE_CHARS)
    assert echo.endswith("已记录备注：" + "记" * (MAX_QUOTE_CHARS - 1) + "…"), "stored whole, echoed short"
    [note] = await sim.rows(Note)
    assert len(note.text) == MAX_NOTE_CHARS
    assert len(sim.sent("command_reply")) == 2, "one console message per command"


async def test_long_console_messages_go_out_in_a_capped_number_of_parts(db_url: str) -> None:
    config = make_config({"digest": {"max_chars": 200}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.with_customers(("c1", "张三"))
        for _ in range(5):
            await sim.rep_types("/note @张三 " + "记" * MAX_NOTE_CHARS)
        before = len(sim.output)
        await sim.rep_types("/info")
        parts = [m["text"] for m in sim.output[before:]]
        assert len(parts) == MAX_PARTS and all(len(p) <= 200 for p in parts)
        assert parts[-1].endswith(TRUNCATED)
        # a suggestion (an outbox row, not a command reply) is split too
        await sim.customer_says("c1", "太贵了")
        suggestion = sim.sent("suggestion")
        assert len(suggestion) > 1 and all(len(m["text"]) <= 200 for m in suggestion)
        assert suggestion[0]["text"].startswith("【张三 #1")


async def test_a_huge_customer_message_is_quoted_short(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"))
    await sim.customer_says("c1", "太贵了" + "，真的" * 100_000)
    [suggestion] = sim.sent("suggestion")
    quote = suggestion["text"].splitlines()[1]
    assert quote.startswith("“太贵了，真的") and len(quote) == MAX_QUOTE_CHARS + 2
    assert len(suggestion["text"]) < 2000


async def test_a_huge_display_name_is_left_out_of_the_welcome_and_cut_in_the_console(sim: Harness) -> None:
    name = "王" * 100_000
    await sim.friend_request("c1", name)
    await sim.advance(timedelta(minutes=1))
    [welcome] = sim.sent("welcome")
    assert len(welcome["text"]) < 1000
    assert welcome["text"].startswith("您好，"), "a customer never reads a cut name (王王王…您好)"
    reply = await sim.rep("/info @#1")
    assert reply.startswith("【" + "王" * (MAX_NAME_CHARS - 1) + "… #1")


async def test_find_treats_percent_and_underscore_as_characters(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"), ("c2", "李四"), ("c3", "王_五"))
    assert await sim.rep("/find %") == "没有找到与「%」相关的客户"
    assert await sim.rep("/find _") == "找到 1 位客户（第 1/1 页）：\n#3 王_五（陌生）"
    assert "没有找到客户「%」" in await sim.rep("/info @%")


async def test_text_appended_to_a_script_has_a_limit(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"))
    await sim.customer_says("c1", "太贵了")
    assert "追加的文字太长（501 个字），最多 500 个字" in await sim.rep("/send 1 " + "好" * 501)
    assert "已安排发送话术 1" in await sim.rep("/send 1 " + "好" * 500)


async def test_an_offer_or_product_a_customer_would_read_has_a_limit(sim: Harness) -> None:
    """The offer name goes into every countdown message and the product into aftercare: a pasted
    paragraph is refused, not sent to the customer (and not echoed in four console parts)."""
    await sim.with_customers(("c1", "张三"))
    reply = await sim.rep("/countdown @张三 周日 " + "活动" * 3000)
    usage = "用法：/countdown <截止时间> [活动名]"
    assert reply == f"活动名太长（6000 个字），最多 {MAX_LABEL_CHARS} 个字\n{usage}"
    assert "倒计时已设置：双十二限时价截止" in await sim.rep("/countdown @张三 周日 双十二限时价")
    reply = await sim.rep("/order @张三 " + "产品" * 3000)
    assert reply == f"产品名太长（6000 个字），最多 {MAX_LABEL_CHARS} 个字\n用法：/order [产品] [确认]"
    assert "已记录成交：五年级数学一对一" in await sim.rep("/order @张三 五年级数学一对一")
    assert len(sim.sent("command_reply")) == 4, "one console message per command"


async def test_an_unknown_stage_is_echoed_short(sim: Harness) -> None:
    await sim.with_customers(("c1", "张三"))
    reply = await sim.rep("/stage @张三 " + "阶" * 5000)
    assert len(reply) < 300 and "阶" * 101 not in reply


async def test_what_the_rep_typed_is_echoed_short_in_every_refusal(sim: Harness) -> None:
    """An unknown command, /help of one, an unreadable date or deadline: one short console message."""
    await sim.with_customers(("c1", "张三"))
    for line in (
        "/" + "a" * 5000,
        "/help " + "b" * 5000,
        "/digest " + "c" * 5000,
        "/countdown @张三 " + "g" * 5000,
    ):
        before = len(sim.sent("command_reply"))
        reply = await sim.rep(line)
        assert len(sim.sent("command_reply")) == before + 1, line[:20]
        assert len(reply) < 400, reply[:50]
