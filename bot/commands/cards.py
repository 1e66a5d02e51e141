"""/info and /find: the customer card, and finding customers by name, tag or stage."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from bot.commands.context import CommandContext, id_of
from bot.commands.registry import command
from bot.domain.display import lifecycle_name, message_name, objection_name, stage_reason
from bot.domain.limits import MAX_ECHO_CHARS, MAX_NAME_CHARS, clip
from bot.services.profile import ProfileService, day_and_time, when
from storage.models import Customer


@dataclass(frozen=True)
class FindArgs:
    query: str
    page: int = 1


@command(
    "info",
    aliases=("客户",),
    usage="/info",
    summary="查看客户卡片：阶段、生命周期、标签、来源、备注、阶段记录、待发消息",
)
async def info(ctx: CommandContext, customer: Customer, profile: ProfileService) -> str:
    card = await profile.card(id_of(customer))
    customer, config, vocabulary = card.customer, ctx.config, profile.vocabulary
    label = profile.pipeline.label
    lines = [f"阶段：{label(customer.stage)}", f"生命周期：{lifecycle_name(customer.lifecycle)}"]
    if customer.remark:
        lines.append(f"备注名：{customer.remark}")
    grouped: dict[str, list[str]] = defaultdict(list)
    for item in card.tags:
        grouped[vocabulary.label(item.group) if item.group else "其他"].append(item.value)
    lines.append(
        "标签：" + ("；".join(f"{g}：{'、'.join(v)}" for g, v in grouped.items()) if grouped else "无")
    )
    lines.append(f"来源：{customer.source_channel or '未知'}")
    lines.append(f"添加时间：{when(customer.added_at, config)}")
    inbound, outbound = when(customer.last_inbound_at, config), when(customer.last_outbound_at, config)
    lines.append(f"最近联系：客户 {inbound}，我方 {outbound}")
    if customer.deleted_at is not None:
        lines.append(f"已删除好友：{when(customer.deleted_at, config)}")
    if card.stages:
        lines.append("阶段记录：")
        for move in card.stages:
            went = (
                f"{label(move.from_stage)} → {label(move.to_stage)}"
                if move.from_stage
                else label(move.to_stage)
            )
            why = stage_reason(move.reason)
            lines.append(f"- {day_and_time(move.at, config, ctx.now)} {went}" + (f"（{why}）" if why else ""))
    if card.objections:
        lines.append("提出过的顾虑：" + "、".join(objection_name(o) for o in card.objections))
    if card.notes:
        lines.append("备注：")
        lines += [f"- {when(n.at, config)} {n.text}" for n in card.notes[-5:]]
    if card.pending:
        lines.append("待发消息：")
        lines += [f"- #{p.id} {when(p.due_at, config)} {message_name(p.kind, p.step)}" for p in card.pending]
    else:
        lines.append("待发消息：无")
    return "\n".join(lines)


@command(
    "find",
    aliases=("查找",),
    usage="/find <名字|标签|阶段> [页码]",
    summary="按名字、标签或阶段查找客户",
)
async def find(ctx: CommandContext, args: FindArgs, profile: ProfileService) -> str:
    page = await profile.find(ctx.account_id, args.query, max(1, args.page), ctx.config.commands.page_size)
    if not page.total:
        return f"没有找到与「{clip(args.query, MAX_ECHO_CHARS)}」相关的客户"
    label = profile.pipeline.label
    lines = [f"找到 {page.total} 位客户（第 {page.page}/{page.pages} 页）："]
    lines += [
        f"#{c.id} {clip(c.remark or c.display_name, MAX_NAME_CHARS)}（{label(c.stage)}）"
        for c in page.customers
    ]
    if page.page < page.pages:
        lines.append(f"下一页：/find {args.query} {page.page + 1}")
    return "\n".join(lines)
