"""Rep commands: declared once, parsed into typed arguments, listed by /help and the README.

A command is an async function decorated with :func:`command`. Its ``args`` parameter is a
dataclass; the parser fills it from the words after the command name by field type:

* ``str`` takes one word, ``int`` one whole number;
* ``Rest`` (an ``Annotated[str, ...]``) takes the remaining text as typed, spaces included;
* ``list[str]`` takes the remaining words;
* a field with a default is optional.

A parse failure answers with the command's usage line; a :class:`CommandError` raised by the
handler is shown to the rep as is. Nothing is changed by a failed command.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import shlex
import types
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from bot.errors import CommandError, UsageError

__all__ = [
    "REGISTRY",
    "Command",
    "CommandError",
    "NoArgs",
    "Permission",
    "Registry",
    "Rest",
    "UsageError",
    "command",
]


class Permission(enum.Enum):
    REP = "rep"  # the account itself and configured admins
    SUPERVISOR = "supervisor"  # reps, and the supervisors who oversee the account


class _RestMarker:
    pass


Rest = Annotated[str, _RestMarker]
"""Field type: the rest of the line, spaces kept."""


@dataclass(frozen=True)
class NoArgs:
    pass


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    usage: str
    summary: str
    permission: Permission
    needs_customer: bool
    args_type: type[Any]
    handler: Callable[..., Awaitable[str]]
    feature: str
    rank: int
    reply_kind: str = "command_reply"

    def parse(self, text: str) -> Any:
        return parse_args(self.args_type, text, self.usage)


@dataclass
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)
    _names: dict[str, Command] = field(default_factory=dict)

    def add(self, cmd: Command) -> None:
        for name in (cmd.name, *cmd.aliases):
            if name in self._names:
                raise ValueError(f"command name /{name} is declared twice")
            self._names[name] = cmd
        self.commands[cmd.name] = cmd

    def find(self, name: str) -> Command | None:
        return self._names.get(name.casefold()) or self._names.get(name)

    def suggest(self, name: str) -> str | None:
        match = difflib.get_close_matches(name, list(self._names), n=1, cutoff=0.5)
        return self._names[match[0]].name if match else None

    def __iter__(self) -> Iterator[Command]:
        """Commands in the order /help lists them (rank, then declaration order)."""
        return iter(sorted(self.commands.values(), key=lambda cmd: cmd.rank))


REGISTRY = Registry()

F = TypeVar("F", bound=Callable[..., Awaitable[str]])


def command(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    usage: str,
    summary: str,
    args: type[Any] = NoArgs,
    needs_customer: bool = False,
    permission: Permission = Permission.REP,
    rank: int = 100,
    reply_kind: str = "command_reply",
    registry: Registry = REGISTRY,
) -> Callable[[F], F]:
    """Declare a rep command. ``needs_customer`` commands act on the resolved customer;
    ``rank`` orders /help (lower first)."""

    def decorate(handler: F) -> F:
        feature = handler.__module__.rsplit(".", 1)[-1]
        registry.add(
            Command(
                name,
                aliases,
                usage,
                summary,
                permission,
                needs_customer,
                args,
                handler,
                feature,
                rank,
                reply_kind,
            )
        )
        return handler

    return decorate


def split_words(text: str) -> list[str]:
    """Words as a shell would split them (quotes group), falling back to whitespace."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _is_rest(hint: Any) -> bool:
    return get_origin(hint) is Annotated and _RestMarker in get_args(hint)[1:]


def _optional_inner(hint: Any) -> Any:
    if get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


def parse_args(args_type: type[Any], text: str, usage: str) -> Any:
    hints = get_type_hints(args_type, include_extras=True)
    fields = dataclasses.fields(args_type)
    remaining = text.strip()
    values: dict[str, Any] = {}
    for spec in fields:
        hint = hints[spec.name]
        has_default = (
            spec.default is not dataclasses.MISSING or spec.default_factory is not dataclasses.MISSING
        )
        if _is_rest(hint):
            if remaining:
                values[spec.name] = remaining
            elif not has_default:
                raise UsageError(usage)
            remaining = ""
            continue
        hint = _optional_inner(hint)
        if get_origin(hint) is list:
            words = split_words(remaining)
            if words:
                values[spec.name] = words
            elif not has_default:
                raise UsageError(usage)
            remaining = ""
            continue
        words = split_words(remaining)
        if not words:
            if not has_default:
                raise UsageError(usage)
            continue
        word, remaining = words[0], remaining.strip()[len(_first_raw_word(remaining)) :].strip()
        if hint is int:
            try:
                values[spec.name] = int(word)
            except ValueError:
                raise UsageError(usage) from None
        else:
            values[spec.name] = word
    if remaining:
        raise UsageError(usage)
    return args_type(**values)


def _first_raw_word(text: str) -> str:
    """The first word of ``text`` as typed (with its quotes), so the rest keeps its spacing."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        return text if end < 0 else text[: end + 1]
    return text.split(maxsplit=1)[0] if text else ""
