"""/tag and /untag: what the rep learns about a customer, as free text or group:value."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext, id_of
from bot.commands.registry import CommandError, Rest, command
from bot.domain.limits import MAX_ECHO_CHARS, clip
from bot.services.profile import ProfileService
from storage.models import Customer


@dataclass(frozen=True)
class TagArgs:
    tags: list[str]


@dataclass(frozen=True)
class UntagArgs:
    tag: Rest


@command(
    "tag",
    aliases=("标签",),
    usage="/tag <标签> [标签...]",
    summary="给客户打标签：自由文本，或 组:值（如 预算:20-30万）",
)
async def tag(ctx: CommandContext, args: TagArgs, customer: Customer, profile: ProfileService) -> str:
    tags, refused = profile.sort_tags(args.tags)
    # what was refused comes first, so a partly refused /tag never reads as a plain success
    refusals = [f"· “{clip(word, MAX_ECHO_CHARS)}”：{why}" for word, why in refused]
    if not tags:
        heading = "标签没有添加：" if len(refused) == 1 else f"{len(refused)} 个标签都没有添加："
        raise CommandError("\n".join([heading, *refusals]))
    added, present = await profile.add_tags(id_of(customer), tags, ctx.actor)
    show = profile.vocabulary.display
    parts = []
    if refused:
        parts.append(f"有 {len(refused)} 个标签没有添加：")
        parts.extend(refusals)
    if added:
        parts.append("已添加标签：" + "、".join(show(t) for t in added))
    if present:
        parts.append("已有标签：" + "、".join(show(t) for t in present))
    return "\n".join(parts)


@command(
    "untag",
    aliases=("删标签",),
    usage="/untag <标签>",
    summary="删除客户的一个标签",
)
async def untag(ctx: CommandContext, args: UntagArgs, customer: Customer, profile: ProfileService) -> str:
    [parsed] = profile.parse_tags([args.tag])
    await profile.remove_tag(id_of(customer), parsed, ctx.actor)
    return f"已删除标签：{profile.vocabulary.display(parsed)}"
