"""/scripts and /use: browse the script library, send a script to the current customer, see which
scripts work."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.context import CommandContext
from bot.commands.registry import Rest, command
from bot.errors import CommandError
from bot.services.script_library import ScriptLibraryService
from storage.models import Customer

STATS_WORDS = ("stats", "统计", "效果")
USE_USAGE = "/use <编号> [追加文字]"


@dataclass(frozen=True)
class ScriptsArgs:
    wanted: Rest = ""


@command(
    "scripts",
    aliases=("话术",),
    usage="/scripts [阶段] [步骤|顾虑] [关键词] [页码]",
    summary=(
        "列出话术库里的话术并编号（可按阶段、步骤/顾虑、关键词筛选，几个词一起用逐个缩小范围）；"
        "/scripts stats 看每条话术的效果"
    ),
)
async def scripts(ctx: CommandContext, args: ScriptsArgs, library: ScriptLibraryService) -> str:
    words = args.wanted.split()
    if words and words[0].casefold() in STATS_WORDS:
        if len(words) == 1:
            return await library.stats_text(ctx.account_id)
        if len(words) == 2 and words[1].isdigit():  # paged like the listing: /scripts stats 2
            return await library.stats_text(ctx.account_id, int(words[1]))
    page = 1
    if words and words[-1].isdigit():  # the last number is the page: /scripts 意向 2
        page = int(words.pop())
    return await library.listing(ctx.account_id, " ".join(words), page)


@dataclass(frozen=True)
class UseArgs:
    number: int
    extra: Rest = ""


async def current(ctx: CommandContext) -> int:
    """/use N without @name goes to the rep's current customer; with none, it says how to pick one."""
    if ctx.state.current is None:
        raise CommandError(
            f"还没有当前客户：先用 /info @张三 选中一位客户，或直接发 /use 编号 @张三。用法：{USE_USAGE}"
        )
    return ctx.state.current


@command(
    "use",
    aliases=("使用",),
    usage=USE_USAGE,
    summary="把最近一次 /scripts 列表里编号为 N 的话术发给当前客户（可追加文字）",
    target=current,
)
async def use(ctx: CommandContext, args: UseArgs, customer: Customer, library: ScriptLibraryService) -> str:
    name, due = await library.use(customer, args.number, args.extra, ctx.actor, USE_USAGE)
    seconds = max(0, round((due - ctx.now).total_seconds()))
    return f"已安排发送话术 {args.number}「{name}」（约 {seconds} 秒后）"
