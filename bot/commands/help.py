"""/help: generated from the registry, so it can never disagree with the commands."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands.registry import Command, CommandError, Registry, command
from bot.domain.limits import MAX_ECHO_CHARS, clip


@dataclass(frozen=True)
class HelpArgs:
    name: str = ""


def _names(cmd: Command) -> str:
    return " ".join(f"/{n}" for n in (cmd.name, *cmd.aliases))


def help_text(registry: Registry) -> str:
    lines = ["可用命令（在文件传输助手里用 @名字 指定客户，在客户聊天里直接输入即作用于该客户）："]
    lines += [f"{cmd.usage}  {cmd.summary}" for cmd in registry]
    lines.append("发送 /help 命令名 查看详细用法，例如 /help tag")
    return "\n".join(lines)


def markdown_table(registry: Registry) -> str:
    """The README's command table."""
    rows = ["| command | aliases | what it does |", "| --- | --- | --- |"]
    for cmd in registry:
        aliases = ", ".join(f"`/{a}`" for a in cmd.aliases) or "—"
        usage = cmd.usage.replace("|", "\\|")
        rows.append(f"| `{usage}` | {aliases} | {cmd.summary} |")
    return "\n".join(rows)


@command(
    "help",
    aliases=("帮助",),
    usage="/help [命令]",
    summary="列出全部命令，或查看某个命令的用法",
)
async def show_help(args: HelpArgs, registry: Registry) -> str:
    if not args.name:
        return help_text(registry)
    name = args.name.lstrip("/／")
    cmd = registry.find(name)
    if cmd is None:
        suggestion = registry.suggest(name)
        hint = f"你是不是想找 /{suggestion}？" if suggestion else "发送 /help 查看全部命令。"
        raise CommandError(f"没有命令 /{clip(name, MAX_ECHO_CHARS)}。{hint}")
    return f"{cmd.usage}\n{cmd.summary}\n名称：{_names(cmd)}"
