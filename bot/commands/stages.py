"""/stage and /stages: where each customer sits on the configured pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext, id_of
from bot.commands.registry import Rest, command
from bot.services.coach import Coach
from bot.services.profile import ProfileService
from storage.models import Customer


@dataclass(frozen=True)
class StageArgs:
    stage: Rest


@command(
    "stage",
    aliases=("阶段",),
    usage="/stage <阶段>",
    summary="把客户移到某个阶段（阶段名或代号）",
)
async def stage(
    ctx: CommandContext, args: StageArgs, customer: Customer, profile: ProfileService, coach: Coach
) -> str:
    old, new = await profile.set_stage(id_of(customer), args.stage, ctx.actor)
    await coach.stage_changed(id_of(customer), old, new)
    label = profile.pipeline.label
    return f"阶段：{label(old)} → {label(new)}"


@command("stages", aliases=("阶段列表",), usage="/stages", summary="列出销售阶段和每个阶段的客户数")
async def stages(ctx: CommandContext, profile: ProfileService) -> str:
    counts = await profile.stage_counts(ctx.account_id)
    lines = ["销售阶段："]
    for number, item in enumerate(profile.pipeline.stages, start=1):
        lines.append(f"{number}. {item.label}：{counts.get(item.key, 0)} 人")
    return "\n".join(lines)
