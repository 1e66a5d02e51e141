"""/digest: the daily digest on demand. A rep sees their own account; a supervisor their team."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from bot.commands.context import CommandContext
from bot.commands.registry import CommandError, Permission, command
from bot.domain.limits import MAX_ECHO_CHARS, clip
from bot.services.digest import DigestService


@dataclass(frozen=True)
class DigestArgs:
    day: str = ""


def parse_day(text: str, today: date) -> date:
    """'', 今天, 昨天, 前天, 2026-11-23 or 11-23 (this year)."""
    text = text.strip()
    named = {"": 0, "今天": 0, "昨天": 1, "前天": 2}
    if text in named:
        return today - timedelta(days=named[text])
    try:
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text):
            return date.fromisoformat(
                "-".join(f"{int(p):02d}" if i else p for i, p in enumerate(text.split("-")))
            )
        if re.fullmatch(r"\d{1,2}-\d{1,2}", text):
            month, day = (int(p) for p in text.split("-"))
            return date(today.year, month, day)
    except ValueError:
        pass
    raise CommandError(f"看不懂日期「{clip(text, MAX_ECHO_CHARS)}」，可以写：今天、昨天、2026-11-23、11-23")


@command(
    "digest",
    aliases=("日报",),
    usage="/digest [日期]",
    summary="查看日报：销售看自己的，主管看团队的（日期如 昨天、11-23）",
    permission=Permission.SUPERVISOR,
    reply_kind="digest",
)
async def digest(ctx: CommandContext, args: DigestArgs, digests: DigestService) -> str:
    day = parse_day(args.day, ctx.now.astimezone(ctx.config.tz).date())
    if day > ctx.now.astimezone(ctx.config.tz).date():
        raise CommandError("不能查看未来的日报")
    if ctx.role == "rep":
        profile = ctx.config.account(ctx.account_id).profile
        parts = await digests.render([ctx.account_id], day, f"{profile.nickname}的日报")
    else:
        parts = await digests.for_supervisor(ctx.config.supervisor(ctx.role), day)
    return "\n".join(parts)
