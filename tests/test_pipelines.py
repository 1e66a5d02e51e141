"""Pipelines other than cars: a business names its own stages (an education pipeline: 咨询, 试听,
报名, 续费, 转介绍), says which are the order and repeat stages, and maps its stages onto the script
library's process steps; `salesbot check`, /order, /stage and the suggested scripts work with the
shipped library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import Config, load_config
from bot.errors import ConfigError, TemplateError
from bot.objections.library import ObjectionLibrary
from tests.conftest import MONDAY_10AM, ROOT, make_config
from tests.harness import Harness

EDUCATION = ROOT / "examples" / "education" / "config.toml"


@pytest.fixture
def education() -> Config:
    return load_config(EDUCATION)


@pytest.fixture
async def school(education: Config, db_url: str) -> AsyncIterator[Harness]:
    async with Harness(education, MONDAY_10AM, database_url=db_url) as simulation:
        yield simulation


def test_salesbot_check_accepts_the_education_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(EDUCATION)]) == 0
    assert "OK" in capsys.readouterr().out


async def test_order_and_stage_moves_follow_the_configured_pipeline(school: Harness) -> None:
    await school.new_customer("c1", "小明妈妈")
    assert (await school.customer("c1")).stage == "consult"
    assert await school.rep("/stage @小明妈妈 试听") == "【小明妈妈 #1 · 试听】\n阶段：咨询 → 试听"
    reply = await school.rep("/order @小明妈妈 暑期数学班")
    assert "阶段：试听 → 报名" in reply, reply
    assert (await school.customer("c1")).stage == "enrolled"
    reply = await school.rep("/order @小明妈妈 秋季班 确认")
    assert "阶段：报名 → 续费" in reply, reply
    assert (await school.customer("c1")).stage == "renewal"
    stages = await school.rep("/stages")
    assert "咨询" in stages and "转介绍" in stages and "下单" not in stages


async def test_scripts_named_by_process_step_reach_the_mapped_stage(school: Harness) -> None:
    await school.new_customer("c1", "小明妈妈")
    await school.rep("/stage @小明妈妈 试听")  # the library's "intent" step
    await school.customer_says("c1", "太贵了，给个实在价")
    [suggestion] = school.sent("suggestion")
    # price-direct-question is written for the "intent" step only (scripts_templates/objections/price.toml)
    assert "小明妈妈，我直接问一句：如果价格合适" in suggestion["text"], suggestion["text"]


def test_stages_must_name_the_order_and_repeat_stages() -> None:
    renamed = [{"key": "a", "label": "甲"}, {"key": "b", "label": "乙"}]
    base = {
        "stages": renamed,
        "pipeline": {"on_first_reply": ""},
        "digest": {"at_risk_from_stage": "a"},
        "signals": {"hot_lead_stage": "a"},
    }
    with pytest.raises(ConfigError, match=r"pipeline\.order_stage: unknown stage 'ordered'"):
        make_config(base)
    with pytest.raises(ConfigError, match=r"pipeline\.repeat_stage: unknown stage 'repeat'"):
        make_config({**base, "pipeline": {"on_first_reply": "", "order_stage": "b"}})
    config = make_config({**base, "pipeline": {"on_first_reply": "", "order_stage": "b", "repeat_stage": ""}})
    assert config.pipeline.order_stage == "b"


def test_a_stage_maps_only_onto_known_process_steps() -> None:
    stages = [
        {"key": "consult", "label": "咨询", "steps": ["potentail"]},
        {"key": "ordered", "label": "下单"},
    ]
    with pytest.raises(ConfigError, match=r"stages\.0\.steps: unknown process step 'potentail'"):
        make_config({"stages": stages, "pipeline": {"on_first_reply": ""}})


def test_the_library_rejects_a_script_for_an_unknown_stage(tmp_path: Path) -> None:
    folder = tmp_path / "objections"
    folder.mkdir()
    for path in (ROOT / "scripts_templates" / "objections").glob("*.toml"):
        (folder / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    price = folder / "price.toml"
    price.write_text(
        price.read_text(encoding="utf-8").replace('stages = ["koc"]', 'stages = ["vip"]'), encoding="utf-8"
    )
    with pytest.raises(TemplateError, match=r"price\.toml:\d+: script 'price-koc-referral' names unknown"):
        ObjectionLibrary.load(tmp_path, ["consult", "trial"])
    assert ObjectionLibrary.load(tmp_path, ["consult", "vip"]).script("price-koc-referral") is not None
