"""Objection handling: suggestions per stage, /send, ranking by success, library checks (reading
the message itself: tests/test_reader.py)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.errors import TemplateError
from bot.objections.library import LABELS, ObjectionLibrary
from bot.services.objections import ObjectionService
from storage.models import Event, ScheduledMessage
from tests.conftest import MONDAY_10AM, ROOT, make_config
from tests.harness import Harness

STAGES = ["stranger", "potential", "intent", "ordered", "repeat", "koc"]


# -- library ------------------------------------------------------------------------------------


def test_library_seeds_every_label_and_every_default_stage() -> None:
    library = ObjectionLibrary.load(ROOT / "scripts_templates", STAGES)
    for label in LABELS:
        objection = library.objections[label]
        assert objection.name
        assert any(not s.stages for s in objection.scripts), f"{label} needs a general fallback script"
        for stage in STAGES:
            specific, general = library.scripts_for(label, stage)
            assert len(specific) + len(general) >= 2, f"{label}/{stage} has fewer than two scripts"


def library_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tpl"
    shutil.copytree(ROOT / "scripts_templates", target)
    return target


def test_script_with_unknown_variable_fails_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    templates = library_copy(tmp_path)
    price = templates / "objections" / "price.toml"
    price.write_text(
        price.read_text(encoding="utf-8").replace("理解您对价格的关注", "{{ coupon }}理解您对价格的关注"),
        encoding="utf-8",
    )
    config = tmp_path / "config.toml"
    config.write_text(
        (ROOT / "config.toml")
        .read_text(encoding="utf-8")
        .replace('templates_dir = "scripts_templates"', 'templates_dir = "tpl"'),
        encoding="utf-8",
    )
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "price.toml:" in err and "script 'price-value-first'" in err and "unknown variable 'coupon'" in err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace('label = "price"', 'label = "greed"'), "label 'greed' is not one of"),
        (
            lambda t: t.replace('id = "price-cost-per-use"', 'id = "price-value-first"'),
            "script id 'price-value-first'",
        ),
        (
            lambda t: t.replace('stages = ["intent", "ordered"]', 'stages = ["vip"]'),
            "names unknown stages ['vip']",
        ),
        (lambda t: t.replace("triggers = [", "trigers = ["), "trigers: unknown key"),
    ],
)
def test_library_errors_name_the_file(tmp_path: Path, edit: Any, expected: str) -> None:
    templates = library_copy(tmp_path)
    price = templates / "objections" / "price.toml"
    price.write_text(edit(price.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(TemplateError) as error:
        ObjectionLibrary.load(templates, STAGES)
    assert "price.toml" in str(error.value) and expected in str(error.value)


def test_missing_objection_file_is_reported(tmp_path: Path) -> None:
    templates = library_copy(tmp_path)
    (templates / "objections" / "fit.toml").unlink()
    with pytest.raises(TemplateError, match="no file for objection"):
        ObjectionLibrary.load(templates, STAGES)


# -- suggestions and /send ----------------------------------------------------------------------


async def test_suggestion_goes_to_the_console_with_stage_scripts(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "这款太贵了吧")
    [suggestion] = sim.sent("suggestion")
    assert suggestion["to"] == "console"
    text = suggestion["text"]
    assert text.startswith("【张三 #1 · 潜在】提出「价格」顾虑：")
    assert "“这款太贵了吧”" in text
    library = sim.bot.objections.library
    expected = [s.id for s in library.scripts_for("price", "potential")[0]][:3]
    rendered = [sim.bot.objections.render_script(library.script(i), "demo", await _c(sim)) for i in expected]  # type: ignore[arg-type]
    for number, body in enumerate(rendered, start=1):
        assert f"{number}. {body}" in text
    assert "张三，理解您对价格的关注" in text, "scripts are rendered with the customer's variables"
    assert not [m for m in sim.output if m["to"] == "c1" and m["kind"] != "welcome"], (
        "nothing reaches the customer"
    )
    [event] = await sim.rows(Event, Event.kind == "objection")
    assert event.data["label"] == "price" and event.text == "这款太贵了吧"


async def _c(sim: Harness) -> Any:
    from storage.models import Customer

    [customer] = await sim.rows(Customer)
    return customer


async def test_stage_without_enough_scripts_falls_back_to_general(sim: Harness) -> None:
    await sim.new_customer()
    # quality has one script made for strangers; the general one fills the list
    await sim.bot.profile.set_stage(1, "koc", "test")
    await sim.customer_says("c1", "质量怎么样")
    text = sim.sent("suggestion")[-1]["text"]
    library = sim.bot.objections.library
    specific, general = library.scripts_for("quality", "koc")
    assert len(specific) == 1
    body = [line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert len(body) == 2, text
    assert general[0].text[:10] in body[1]


async def test_send_delivers_the_script_after_a_pause_as_a_reply(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "太贵了")
    await sim.rep_types("/send 2")
    [ack] = sim.sent("command_reply")
    assert ack["text"].startswith("【张三 #1") and "已安排发送话术 2" in ack["text"]
    assert sim.sent("reply") == []
    await sim.advance(timedelta(seconds=10))
    [reply] = sim.sent("reply")
    assert reply["to"] == "c1"
    script_id = (await _suggested(sim.bot.objections, 1))[1]
    assert reply["text"] == sim.bot.objections.render_script(
        sim.bot.objections.library.script(script_id),  # type: ignore[arg-type]
        "demo",
        await _c(sim),
    )
    [sent] = await sim.rows(Event, Event.kind == "script_sent")
    assert sent.data == {"script_id": script_id, "label": "price", "stage": "potential"}


async def test_send_with_extra_text_and_alias(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "要回去问问家里人")
    await sim.rep_types("/发送 1 周六带家人来，我请喝咖啡")
    await sim.advance(timedelta(seconds=10))
    [reply] = sim.sent("reply")
    assert reply["text"].endswith("\n周六带家人来，我请喝咖啡")


async def test_send_errors(sim: Harness) -> None:
    await sim.new_customer()
    await sim.rep_types("/send 1 @张三")
    assert "没有待选的话术建议" in sim.sent("command_reply")[-1]["text"]
    await sim.customer_says("c1", "太贵了")
    await sim.rep_types("/send 9")
    assert "没有编号为 9 的待选话术" in sim.sent("command_reply")[-1]["text"]
    await sim.rep_types("/send 9 @张三")
    assert "没有编号为 9 的待选话术，这位客户的建议编号是 1–3" in sim.sent("command_reply")[-1]["text"]
    await sim.rep_types("/send one")
    assert sim.sent("command_reply")[-1]["text"].endswith("用法：/send <编号> [追加文字]")
    await sim.rep_types("/send 1")
    await sim.rep_types("/send 1")
    assert "话术 1 已经发送过了" in sim.sent("command_reply")[-1]["text"]
    await sim.advance(timedelta(minutes=1))
    assert len(sim.sent("reply")) == 1
    assert len(await sim.rows(ScheduledMessage, ScheduledMessage.kind == "reply")) == 1


async def test_send_typed_in_the_customer_chat(sim: Harness) -> None:
    await sim.new_customer()
    await sim.new_customer("c2", "李四")
    await sim.customer_says("c1", "太贵了")
    await sim.customer_says("c2", "我再考虑考虑")  # now 李四 is the current customer
    await sim.rep_types("/send 1", in_chat="c1")
    await sim.advance(timedelta(seconds=10))
    [reply] = sim.sent("reply")
    assert reply["to"] == "c1" and "价格" in reply["text"]


async def test_a_suggestion_does_not_move_the_current_customer(sim: Harness) -> None:
    await sim.new_customer()
    await sim.new_customer("c2", "李四")
    await sim.rep_types("/info @张三")
    await sim.customer_says("c2", "太贵了")
    await sim.rep_types("/stage 意向")
    assert sim.last_reply().startswith("【张三 #1 · 意向】"), "the rep's customer, not the one reported on"
    assert (await sim.customer("c2")).stage == "potential"


async def test_send_n_goes_to_the_customer_whose_suggestion_showed_n(sim: Harness) -> None:
    await sim.new_customer()
    await sim.new_customer("c2", "李四")
    await sim.customer_says("c1", "太贵了")
    await sim.customer_says("c2", "太贵了")
    first, second = (m["text"] for m in sim.sent("suggestion"))
    assert "\n1. " in first and "\n3. " in first
    assert "\n4. " in second and "\n6. " in second and "\n1. " not in second, (
        "open suggestions share no number"
    )
    await sim.rep_types("/info @张三")  # the rep looks at 张三 ...
    await sim.rep_types("/send 5")  # ... and answers 李四's suggestion
    assert sim.last_reply().startswith("【李四 #2") and "已安排发送话术 5" in sim.last_reply()
    await sim.rep_types("/send 5 @张三")
    assert "话术 5 是给「李四 #2」的建议，不是给「张三 #1」的。「张三」的建议编号是 1–3" in sim.last_reply()
    await sim.rep_types("/send 2", in_chat="c2")  # answered in the console: both customers are named
    assert "话术 2 是给「张三 #1」的建议，不是给「李四 #2」的。「李四」的建议编号是 4–6" in sim.last_reply()
    await sim.advance(timedelta(seconds=10))
    [reply] = sim.sent("reply")
    assert reply["to"] == "c2"
    script_id = (await _suggested(sim.bot.objections, 2))[1]
    c2 = await sim.customer("c2")
    library = sim.bot.objections.library
    assert reply["text"] == sim.bot.objections.render_script(library.script(script_id), "demo", c2)  # type: ignore[arg-type]
    # a day without suggestions: old numbers are no longer open, and numbering starts again
    await sim.advance(timedelta(days=1, minutes=1))
    await sim.rep_types("/send 2")
    assert "没有编号为 2 的待选话术（建议发出 24 小时后失效）" in sim.last_reply()
    await sim.customer_says("c2", "太贵了")
    assert "\n1. " in sim.sent("suggestion")[-1]["text"]


async def test_no_suggestion_for_resolved_doubts_small_talk_or_opt_out(sim: Harness) -> None:
    await sim.new_customer()
    for text in ("价格没问题", "好的谢谢", "退订"):
        await sim.customer_says("c1", text)
    assert sim.sent("suggestion") == []
    [opt_out] = await sim.rows(Event, Event.kind == "opt_out")
    assert opt_out.text == "退订"


async def test_suggestions_can_be_turned_off(db_url: str) -> None:
    async with Harness(
        make_config({"objections": {"enabled": False}}), MONDAY_10AM, database_url=db_url
    ) as sim:
        await sim.new_customer()
        await sim.customer_says("c1", "太贵了")
        assert sim.sent("suggestion") == []


async def test_info_shows_objections_raised(sim: Harness) -> None:
    await sim.new_customer()
    await sim.customer_says("c1", "太贵了")
    await sim.customer_says("c1", "我得跟老婆商量")
    await sim.rep_types("/info @张三")
    assert "提出过的顾虑：价格、决策人" in sim.sent("command_reply")[-1]["text"]


async def test_scripts_that_work_rank_first_once_there_is_enough_data(db_url: str) -> None:
    config = make_config({"objections": {"min_sends_for_ranking": 2, "success_window_days": 7}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        service = sim.bot.objections
        first, second = service.library.scripts_for("price", "potential")[0][:2]
        for number, handle in enumerate(("c1", "c2"), start=1):
            await sim.new_customer(handle, f"客户{number}")
            await sim.customer_says(handle, "太贵了")
            assert (await _suggested(service, number))[:2] == (first.id, second.id)
            shown = await service.last_suggestion(number)
            assert shown is not None
            await sim.rep_types(f"/send {shown.first + 1} @#{number}")  # the second script...
            await sim.advance(timedelta(seconds=10))
            await sim.rep_types(f"/stage @#{number} intent")  # ...and the customer moves up
        async with sim.bot.db.transaction() as session:
            stats = await service.script_stats(session)
        assert (stats[second.id].sent, stats[second.id].succeeded) == (2, 2)
        await sim.new_customer("c3", "客户3")
        await sim.customer_says("c3", "太贵了")
        assert (await _suggested(service, 3))[:2] == (second.id, first.id)


async def test_too_little_data_keeps_stage_order(db_url: str) -> None:
    config = make_config({"objections": {"min_sends_for_ranking": 5}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        service = sim.bot.objections
        first, second = service.library.scripts_for("price", "potential")[0][:2]
        await sim.new_customer()
        await sim.customer_says("c1", "太贵了")
        await sim.rep_types("/send 2")
        await sim.advance(timedelta(seconds=10))
        await sim.rep_types("/stage @张三 intent")
        await sim.new_customer("c2", "李四")
        await sim.customer_says("c2", "太贵了")
        assert (await _suggested(service, 2))[:2] == (first.id, second.id)


async def test_moves_outside_the_window_do_not_count(db_url: str) -> None:
    config = make_config({"objections": {"min_sends_for_ranking": 1, "success_window_days": 7}})
    async with Harness(config, MONDAY_10AM, database_url=db_url) as sim:
        await sim.new_customer()
        await sim.customer_says("c1", "太贵了")
        await sim.rep_types("/send 1")
        await sim.advance(timedelta(days=8))
        await sim.rep_types("/stage @张三 intent")
        async with sim.bot.db.transaction() as session:
            stats = await sim.bot.objections.script_stats(session)
        [only] = stats.values()
        assert (only.sent, only.succeeded) == (1, 0)


async def test_send_works_after_a_restart(config: Any, db_url: str) -> None:
    async with Harness(config, MONDAY_10AM, database_url=db_url) as first:
        await first.new_customer()
        await first.customer_says("c1", "太贵了")
        expected = (await _suggested(first.bot.objections, 1))[1]
    async with Harness(config, MONDAY_10AM + timedelta(minutes=5), database_url=db_url) as second:
        second.puppet.add_contact("wx_c1", "张三", friend=True)
        second.handles["wx_c1"] = "c1"
        await second.rep_types("/send 2 @张三")
        await second.advance(timedelta(seconds=10))
        [reply] = second.sent("reply")
        library = second.bot.objections.library
        assert reply["text"] == second.bot.objections.render_script(
            library.script(expected),  # type: ignore[arg-type]
            "demo",
            await _c(second),
        )


async def _suggested(service: ObjectionService, customer_id: int) -> tuple[str, ...]:
    """The script ids of the customer's latest suggestion, as /send will pick from them."""
    suggestion = await service.last_suggestion(customer_id)
    assert suggestion is not None, "a suggestion was made"
    return suggestion.script_ids


async def test_messages_handled_at_once_get_suggestions_with_different_numbers(sim: Harness) -> None:
    await sim.new_customer()
    await sim.new_customer("c2", "李四")
    for handle in ("c1", "c2"):  # both arrive before either is handled
        sim.puppet.customer_says(sim.contact_id(handle), "太贵了")
    await sim.bot.settle()
    events = await sim.rows(Event, Event.kind == "objection")
    assert sorted(e.data["first"] for e in events) == [1, 4]
