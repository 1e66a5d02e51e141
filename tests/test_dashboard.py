"""The dashboard's aggregations over seeded days (SQLite, and PostgreSQL when configured): funnel
conversion and time in stage, daily trends by local day, script effectiveness, who needs attention,
lifecycle counts; and the page's filters, read in the supervisor's words."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.services.dashboard import stay_text
from bot.web.app import create_app
from tests.dashboard_data import seed_three_days
from tests.harness import Harness


@pytest.fixture
async def week(sim: Harness) -> Harness:
    await seed_three_days(sim)
    return sim


async def test_funnel_counts_conversion_and_time_in_stage(week: Harness) -> None:
    funnel = {row.stage: row for row in await week.bot.reports.dashboard.funnel()}
    assert {k: r.customers for k, r in funnel.items()} == {
        "stranger": 0,
        "potential": 1,
        "intent": 1,
        "ordered": 1,
        "repeat": 0,
        "koc": 0,
    }
    # 李四 went from 潜在 straight to 下单: he reached 意向 on the way
    assert {k: r.reached for k, r in funnel.items()} == {
        "stranger": 3,
        "potential": 3,
        "intent": 2,
        "ordered": 1,
        "repeat": 0,
        "koc": 0,
    }
    conversion = {k: r.conversion for k, r in funnel.items()}
    assert conversion["stranger"] == 1.0 and conversion["potential"] == pytest.approx(2 / 3)
    assert (conversion["intent"], conversion["ordered"]) == (0.5, 0.0)
    assert conversion["repeat"] is None and conversion["koc"] is None, "nobody reached it / the last stage"
    # 陌生: 张三 a minute, 王五 9.5 hours, 李四 a day: the median is 王五's
    assert funnel["stranger"].median_hours == pytest.approx(9.5, abs=0.01)
    assert stay_text(funnel["stranger"].median_hours) == "10小时"
    assert funnel["koc"].median_hours is None and stay_text(None) == "—"
    assert (stay_text(0.2), stay_text(36)) == ("不到1小时", "1.5天")


async def test_time_in_stage_reads_recent_stays_and_conversion_everyone(week: Harness) -> None:
    week.clock.set(week.clock.now() + timedelta(days=91))  # the clock alone: nothing else needs to run
    funnel = {row.stage: row for row in await week.bot.reports.dashboard.funnel()}
    assert all(row.median_hours is None for row in funnel.values()), "no stay begun in 90 days"
    assert (funnel["stranger"].reached, funnel["intent"].reached) == (3, 2)


async def test_trends_count_per_local_day(week: Harness) -> None:
    trends = await week.bot.reports.dashboard.trends()
    assert set(trends) == {7, 30}
    week_days = {t.measure: t for t in trends[7]}
    assert [d for d, _ in week_days["new_friends"].days][-1] == date(2026, 11, 25), "today last"
    assert len(week_days["orders"].days) == 7 and len(trends[30][0].days) == 30

    def nonzero(measure: str) -> dict[str, int]:
        return {d.isoformat(): n for d, n in week_days[measure].days if n}

    # 王五 added the rep at 00:30 on Tuesday in Shanghai (Monday in UTC): Tuesday's
    assert nonzero("new_friends") == {"2026-11-23": 2, "2026-11-24": 1}
    assert nonzero("replied") == {"2026-11-23": 1, "2026-11-24": 2, "2026-11-25": 1}, "customers, once a day"
    assert nonzero("orders") == {"2026-11-24": 1}
    assert nonzero("objections") == {"2026-11-23": 1, "2026-11-24": 1}
    assert [t.total for t in trends[30]] == [t.total for t in trends[7]] == [3, 4, 1, 2]


async def test_scripts_attention_and_lifecycle(week: Harness) -> None:
    board = week.bot.reports.dashboard
    [script] = await board.scripts_effectiveness()
    assert script.name.startswith("【价格】") and (script.sent, script.succeeded, script.rate) == (1, 0, 0.0)
    assert script.thin and script.account == "小林"
    attention = await board.attention()
    assert [(w.name, w.customer_id) for w in attention.owed] == [("李四", 2)], "王五 got a script"
    assert attention.hot_leads == [] and attention.koc == []
    lifecycle = await board.lifecycle()
    assert [label for _, label, _ in lifecycle] == ["新客", "成长", "成熟", "休眠", "流失"]
    assert sum(n for _, _, n in lifecycle) == 3 and dict((s, n) for s, _, n in lifecycle)["mature"] == 1


async def page(sim: Harness, **params: str) -> tuple[int, str]:
    client = TestClient(TestServer(create_app(sim.bot.reports, token="t", token_for_reads=False)))
    await client.start_server()
    try:
        response = await client.get("/dashboard", params=params)
        return response.status, await response.text()
    finally:
        await client.close()


def visible(html: str) -> str:
    """The page's text roughly as a person reads it (no tags, scripts, styles or attributes)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


async def test_page_shows_names_local_times_and_chinese_labels(week: Harness) -> None:
    status, html = await page(week)
    assert status == 200
    text = visible(html)
    assert not re.search(r"\d{4}-\d\d-\d\dT\d", text), "no ISO T"
    for internal in ("welcome", "command_reply", "authority", "logged in", "followup", "stranger", "mature"):
        assert internal not in text, internal
    upcoming = html[html.index('id="upcoming"') : html.index("</table>", html.index('id="upcoming"'))]
    assert "李四" in upcoming, "scheduled messages name the customer"
    assert 'rel="icon"' in html and "data:image/svg+xml" in html
    for figure in ('data-measure="new_friends" data-span="7" data-total="3"', 'data-span="30"'):
        assert figure in html
    assert 'data-day="2026-11-24" data-count="1"' in html
    assert "67%" in text and "KOC 候选" in text and "成熟" in text


@pytest.mark.parametrize(
    ("params", "field", "explained"),
    [
        ({"silent_days": "七天"}, "silent_days", "沉默天数请填 0 到 3650 之间的整数"),
        ({"stage": "nope"}, "stage", "没有“nope”这个阶段"),
        ({"account": "ghost"}, "account", "没有这个销售账号"),
        ({"tag": "层级:Z"}, "tag", ""),
        ({"date": "23/11"}, "date", "日期请按 2026-11-23 这样的格式填写"),
        # a real date the day arithmetic cannot reach (was a 500 with OverflowError in the log)
        ({"date": "9999-12-31"}, "date", "日期请填 2000 年到 2100 年之间的日子"),
        # a control character (PostgreSQL refuses a NUL: that was a 500)
        ({"tag": "预算\x00"}, "tag", "看不见的控制字符"),
        ({"date": "0001-01-01"}, "date", "日期请填 2000 年到 2100 年之间的日子"),
    ],
)
async def test_a_bad_filter_is_explained_next_to_its_field_and_kept(
    week: Harness, params: dict[str, str], field: str, explained: str
) -> None:
    status, html = await page(week, **params)
    assert status == 400 and "<!doctype html>" in html and "销售看板" in html, (
        "the whole page, not a bare 400"
    )
    error = re.search(rf'<p class="error" id="err-{field}"[^>]*>([^<]+)</p>', html)
    assert error is not None and explained in error.group(1)
    assert not re.search(r"[A-Za-z]{4,}", error.group(1).replace(params[field], "")), error.group(1)
    assert f'aria-describedby="err-{field}"' in html
    typed = params[field]
    assert f'value="{typed}"' in html, "the value typed is kept"


async def test_api_keys_for_names_and_lifecycle(week: Harness) -> None:
    client = TestClient(TestServer(create_app(week.bot.reports, token="t", token_for_reads=False)))
    await client.start_server()
    try:
        customers: dict[str, Any] = await (await client.get("/api/customers")).json()
        first = customers["customers"][0]
        assert (first["lifecycle"], first["lifecycle_label"], first["account_nickname"]) == (
            "new",
            "新客",
            "小林",
        )
        scheduled = await (await client.get("/api/scheduled")).json()
        named = {row["customer_name"] for row in scheduled if row["customer_id"] is not None}
        assert named and named <= {"张三", "李四", "王五"}
        assert all(row["customer_name"] == "" for row in scheduled if row["customer_id"] is None)
    finally:
        await client.close()


async def test_each_form_keeps_the_other_forms_values(week: Harness) -> None:
    status, html = await page(week, stage="intent", date="2026-11-24")
    assert status == 200 and "11月24日团队数据" in html
    day_form = html[html.index('id="day-form"') : html.index("</form>", html.index('id="day-form"'))]
    assert '<input type="hidden" name="stage" value="intent">' in day_form
    filters = html[html.index('id="filters"') : html.index("</form>", html.index('id="filters"'))]
    assert '<input type="hidden" name="date" value="2026-11-24">' in filters
    assert '<option value="intent" selected>' in filters


async def test_paging_keeps_the_filter(week: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.web.dashboard.PAGE_SIZE", 2)
    _, first = await page(week, account="demo")
    assert "第 1–2 位" in first and "上一页" not in first
    assert 'href="/dashboard?account=demo&amp;offset=2#customer-section">下一页' in first
    _, second = await page(week, account="demo", offset="2")
    assert "第 3 位" in second and "下一页" not in second
    assert 'href="/dashboard?account=demo#customer-section">上一页' in second
    table = second[second.index('id="customers"') : second.index("</table>", second.index('id="customers"'))]
    assert table.count("<tr data-id=") == 1
