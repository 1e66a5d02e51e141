"""/tag and /untag: what the rep learns about a customer, as free text or group:value."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import Rest, command


@dataclass(frozen=True)
class TagArgs:
    tags: list[str]


@dataclass(frozen=True)
class UntagArgs:
    tag: Rest


@command(
    "tag",
    rank=10,
    aliases=("标签",),
    usage="/tag <标签> [标签...]",
    summary="给客户打标签：自由文本，或 组:值（如 预算:20-30万）",
    args=TagArgs,
    needs_customer=True,
)
async def tag(ctx: CommandContext, args: TagArgs) -> str:
    tags = ctx.profile.parse_tags(args.tags)
    added, present = await ctx.profile.add_tags(ctx.customer_id, tags, ctx.actor)
    show = ctx.profile.vocabulary.display
    parts = []
    if added:
        parts.append("已添加标签：" + "、".join(show(t) for t in added))
    if present:
        parts.append("已有标签：" + "、".join(show(t) for t in present))
    return "\n".join(parts)


@command(
    "untag",
    rank=11,
    aliases=("删标签",),
    usage="/untag <标签>",
    summary="删除客户的一个标签",
    args=UntagArgs,
    needs_customer=True,
)
async def untag(ctx: CommandContext, args: UntagArgs) -> str:
    [parsed] = ctx.profile.parse_tags([args.tag])
    await ctx.profile.remove_tag(ctx.customer_id, parsed, ctx.actor)
    return f"已删除标签：{ctx.profile.vocabulary.display(parsed)}"
