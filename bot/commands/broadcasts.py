"""/broadcast and /confirm: a segment send (群发, one message per customer), previewed first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.commands.context import CommandContext
from bot.commands.registry import Permission, Rest, UsageError, command
from bot.config import Config
from bot.domain.limits import clip
from bot.services.broadcasts import (
    CAPPED,
    DELETED,
    OPTED_OUT,
    PAUSED,
    PREVIEW_TTL,
    WINDOW,
    BroadcastService,
    Incomplete,
    Selection,
)
from bot.services.profile import day_and_time

BROADCAST_USAGE = "/broadcast <筛选> <内容|模板:名字> 或 /broadcast 取消"
# words that stop what is left of the broadcasts instead of starting one
STOP_WORDS = ("取消", "停止", "cancel", "stop")
# how the preview names each reason a customer is left out
EXCLUDED = {
    OPTED_OUT: "已退订或不想被催",
    PAUSED: "自动消息已暂停",
    CAPPED: f"{WINDOW.days}天内排不上（每天发送上限、间隔发送）",
    DELETED: "已删除好友",
}
QUOTE_CHARS = 60  # the message repeated in the preview


@dataclass(frozen=True)
class BroadcastArgs:
    text: Rest


@command(
    "broadcast",
    aliases=("群发",),
    usage=BROADCAST_USAGE,
    summary="按阶段、标签、生命周期（新客、休眠…）、沉默天数（沉默7天）筛选客户，"
    "一对一群发，先预览再 /confirm；/broadcast 取消 停止还没发的",
    permission=Permission.SUPERVISOR,
)
async def broadcast(ctx: CommandContext, args: BroadcastArgs, broadcasts: BroadcastService) -> str:
    if args.text.strip().casefold() in STOP_WORDS:
        stopped = await broadcasts.cancel(ctx.account_id, ctx.actor, ctx.role)
        if not stopped:
            return "没有正在进行的群发"
        return f"已停止群发：还没发出的 {stopped} 条消息已取消"
    try:
        preview = await broadcasts.preview(ctx.account_id, ctx.actor, ctx.role, args.text)
    except Incomplete:
        raise UsageError(BROADCAST_USAGE) from None
    request, selection = preview.request, preview.selection
    what = (
        f"模板 {request.template.removeprefix('broadcast/').removesuffix('.txt.j2')}"
        if request.template
        else (f"「{clip(request.text, QUOTE_CHARS)}」")
    )
    lines = [f"群发预览：筛选「{' '.join(request.segment.words)}」共 {selection.matched} 位客户"]
    if len(request.accounts) > 1:
        lines[0] += f"（{len(request.accounts)} 个账号）"
    lines.append(f"将发送：{len(selection.included)} 位，每人一条 {what}")
    lines.extend(_excluded_lines(selection))
    if selection.included:
        lines.append(_timing(selection, ctx.config, ctx.now))
        minutes = int(PREVIEW_TTL.total_seconds() // 60)
        lines.append(f"{minutes} 分钟内发送 /confirm 确认群发；之后可用 /broadcast 取消 停止还没发的")
    else:
        lines.append("没有可以发送的客户，不会群发")
    return "\n".join(lines)


@command(
    "confirm",
    aliases=("确认",),
    usage="/confirm",
    summary="确认最近一次 /broadcast 预览的群发（10分钟内有效）",
    permission=Permission.SUPERVISOR,
)
async def confirm(ctx: CommandContext, broadcasts: BroadcastService) -> str:
    done = await broadcasts.confirm(ctx.account_id, ctx.actor)
    selection = done.selection
    lines = [f"已安排群发：{done.planned} 位客户每人一条"]
    lines.extend(_excluded_lines(selection))
    if selection.included:
        lines.append(_timing(selection, ctx.config, ctx.now))
    lines.append(
        "免打扰时段不发，每天有上限，退订、暂停或删除好友的客户到时也不会收到；/broadcast 取消 可停止还没发的"
    )
    return "\n".join(lines)


def _excluded_lines(selection: Selection) -> list[str]:
    if not selection.excluded:
        return []
    parts = [f"{EXCLUDED[reason]} {count}" for reason, count in selection.excluded.items() if count]
    return [f"不发送：{sum(selection.excluded.values())} 位（{'，'.join(parts)}）"]


def _timing(selection: Selection, config: Config, now: datetime) -> str:
    first = min(at for _, at in selection.included)
    last = selection.last_at or first
    return (
        f"预计 {day_and_time(first, config, now)} 开始，最后一条约 {day_and_time(last, config, now)} 发出"
        "（自动消息间隔发送、免打扰时段不发）"
    )
