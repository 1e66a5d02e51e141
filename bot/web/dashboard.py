"""The dashboard page: its filters read in the supervisor's words and the page rendered.

A bad filter value is explained next to its field in Chinese and the value is kept (the page is
answered with status 400, still a whole page), never a bare error page. The app only routes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from bot.errors import CommandError
from bot.services.dashboard import STAY_WINDOW_DAYS, stay_text
from bot.services.reports import ReportService
from bot.web.pages import PAGES

PAGE_SIZE = 50
MAX_SILENT_DAYS = 3650
# the fields the customers filter keeps in its links (paging) and in the form
FILTER_FIELDS = ("stage", "tag", "account", "silent_days")
# days the reports can be asked about: the day arithmetic (yesterday, the zone's midnight) works
# well inside these, and nothing this bot recorded lies outside
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)


def in_range(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


def has_control(value: str) -> bool:
    """A control character (NUL and the like): nobody types one, and PostgreSQL refuses a NUL."""
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in value)


@dataclass
class DashboardQuery:
    """What the supervisor asked for: the values as typed (shown back in the form), an
    explanation per field that could not be read, and the values read."""

    typed: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    stage: str = ""
    tag: str = ""
    account: str = ""
    silent_days: int = 0
    offset: int = 0
    day: date | None = None

    def link(self, **changes: Any) -> str:
        """The query string of this filter with some values changed (paging keeps the filter)."""
        values: dict[str, Any] = {name: self.typed.get(name, "") for name in (*FILTER_FIELDS, "date")}
        values.update(changes)
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", 0, None)})


def read_query(query: Mapping[str, str], reports: ReportService) -> DashboardQuery:
    """The dashboard's query string, each value checked with a reason in Chinese."""
    typed = {name: query.get(name, "").strip() for name in (*FILTER_FIELDS, "offset", "date")}
    parsed = DashboardQuery(typed=typed)
    errors = parsed.errors
    for name in (*FILTER_FIELDS, "date"):
        if has_control(typed[name]):
            errors[name] = "这里有看不见的控制字符，请删掉后重新输入"
    # what is read: a value explained above is left out (the form still shows it as typed)
    typed = {name: "" if name in errors or has_control(value) else value for name, value in typed.items()}
    if typed["stage"]:
        key = reports.pipeline.resolve(typed["stage"])
        if key is None:
            names = "、".join(s.label for s in reports.pipeline.stages)
            errors["stage"] = f"没有“{typed['stage']}”这个阶段，可选：{names}"
        else:
            parsed.stage = key
    if typed["tag"]:
        try:
            reports.profile.parse_tags([typed["tag"]])
            parsed.tag = typed["tag"]
        except CommandError as exc:
            errors["tag"] = str(exc)
    if typed["account"]:
        if typed["account"] in {a.id for a in reports.config.accounts}:
            parsed.account = typed["account"]
        else:
            errors["account"] = "没有这个销售账号，请在列表里选择"
    if typed["silent_days"]:
        raw = typed["silent_days"]
        if raw.isdigit() and int(raw) <= MAX_SILENT_DAYS:
            parsed.silent_days = int(raw)
        else:
            errors["silent_days"] = f"沉默天数请填 0 到 {MAX_SILENT_DAYS} 之间的整数，例如 7"
    if typed["offset"].isdigit():
        parsed.offset = min(int(typed["offset"]), 10_000_000)
    if typed["date"]:
        try:
            parsed.day = date.fromisoformat(typed["date"])
        except ValueError:
            errors["date"] = "日期请按 2026-11-23 这样的格式填写"
        else:
            if not in_range(parsed.day):
                parsed.day = None
                errors["date"] = (
                    f"日期请填 {FIRST_DAY.year} 年到 {LAST_DAY.year} 年之间的日子，例如 2026-11-23"
                )
    return parsed


def local_time(value: str | None, with_year: bool = True) -> str:
    """An ISO time the reports give (already in the configured zone) as a person reads it:
    2026-11-24 10:30, never with the ISO ``T``."""
    if not value:
        return ""
    at = datetime.fromisoformat(value)
    return f"{at:%Y-%m-%d %H:%M}" if with_year else f"{at:%m-%d %H:%M}"


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def day_label(day: date) -> str:
    return f"{day.month}月{day.day}日"


async def render(
    reports: ReportService, query: Mapping[str, str], *, signed_in: bool = False, logins: Any = ()
) -> tuple[str, int]:
    """The whole page and its status (400 when a filter needs correcting)."""
    asked = read_query(query, reports)
    board = reports.dashboard
    customers = None
    if not {"stage", "tag", "account", "silent_days"} & set(asked.errors):
        customers = await reports.customers(
            stage=asked.stage,
            tag=asked.tag,
            account=asked.account,
            silent_days=asked.silent_days,
            limit=PAGE_SIZE,
            offset=asked.offset,
        )
    page = PAGES.get_template("dashboard.html.j2").render(
        metrics=await reports.metrics(asked.day),
        customers=customers,
        asked=asked,
        page_size=PAGE_SIZE,
        upcoming=await reports.scheduled("pending", 20),
        failed=await reports.scheduled("failed", 20),
        stages=reports.pipeline.stages,
        accounts=reports.config.accounts,
        nicknames={a.id: a.profile.nickname for a in reports.config.accounts},
        connections=reports.accounts(),
        cluster=await reports.cluster(),
        funnel=await board.funnel(),
        trends=await board.trends(),
        scripts=await board.scripts_effectiveness(),
        attention=await board.attention(),
        lifecycle=await board.lifecycle(),
        success_days=reports.config.objections.success_window_days,
        token="",  # never echo the token into a page (links carry the session cookie instead)
        signed_in=signed_in,
        logins=logins,
        local_time=local_time,
        percent=percent,
        day_label=day_label,
        stay_text=stay_text,
        stay_days=STAY_WINDOW_DAYS,
    )
    return page, 400 if asked.errors else 200
