"""Rep commands: declared once, parsed into typed arguments, listed by /help and the README.

A command is an async function decorated with :func:`command`. Its signature is the whole
declaration of what it needs; each parameter is injected by its type (as aiogram does):

* :class:`~bot.commands.context.CommandContext`: who typed it, where, when;
* :class:`~storage.models.Customer`: the command acts on a customer (``@name``, the customer whose
  chat it was typed in, or "this customer");
* a dataclass: the arguments, parsed from the words after the command name by field type
  (``str`` one word, ``int`` one whole number, ``Rest`` the remaining text as typed, ``list[str]``
  the remaining words; a field with a default is optional);
* any other class: the service of that class, which the console must be given.

/help lists commands in the order they are declared (module import order in ``bot.commands``).
A parse failure answers with the command's usage line; a :class:`CommandError` raised by the
handler is shown to the rep as is. Nothing is changed by a failed command.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import shlex
import types
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from bot.commands.context import CommandContext
from bot.domain.ids import fits_id
from bot.errors import CommandError, UsageError
from storage.models import Customer

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
    handler: Callable[..., Awaitable[str]]
    feature: str
    reply_kind: str
    # read from the handler's signature: parameter name -> what is injected there
    params: tuple[tuple[str, type[Any]], ...]
    args_type: type[Any]  # the argument dataclass (NoArgs if the handler takes none)
    # when the rep names no customer: finds the one the arguments point at (a customer id) instead
    # of "this customer"; its parameters are injected like the handler's (no Customer)
    target: Callable[..., Awaitable[int]] | None = None
    target_params: tuple[tuple[str, type[Any]], ...] = ()

    @property
    def needs_customer(self) -> bool:
        return any(kind is Customer for _, kind in self.params)

    @property
    def services(self) -> tuple[type[Any], ...]:
        """The service classes the handler asks for."""
        return tuple(kind for _, kind in (*self.params, *self.target_params) if _is_service(kind))

    def parse(self, text: str) -> Any:
        return parse_args(self.args_type, text, self.usage)

    async def call(
        self, ctx: CommandContext, args: Any, customer: Customer | None, services: dict[type[Any], Any]
    ) -> str:
        """Run the handler with each parameter filled by its type."""
        return await self.handler(**self._inject(self.params, ctx, args, customer, services))

    async def find_target(self, ctx: CommandContext, args: Any, services: dict[type[Any], Any]) -> int:
        """The customer the arguments point at, for a command declared with a ``target``."""
        assert self.target is not None
        return await self.target(**self._inject(self.target_params, ctx, args, None, services))

    def _inject(
        self,
        params: tuple[tuple[str, type[Any]], ...],
        ctx: CommandContext,
        args: Any,
        customer: Customer | None,
        services: dict[type[Any], Any],
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, kind in params:
            if kind is CommandContext:
                values[name] = ctx
            elif kind is Customer:
                values[name] = customer
            elif kind is self.args_type:
                values[name] = args
            else:
                values[name] = services[kind]
        return values


def _is_service(kind: type[Any]) -> bool:
    return kind not in (CommandContext, Customer) and not dataclasses.is_dataclass(kind)


def read_signature(handler: Callable[..., Any]) -> tuple[tuple[tuple[str, type[Any]], ...], type[Any]]:
    """The handler's parameters with their types, and its argument dataclass."""
    hints = get_type_hints(handler)
    params: list[tuple[str, type[Any]]] = []
    args_types: list[type[Any]] = []
    for name in inspect.signature(handler).parameters:
        kind = hints.get(name)
        if not isinstance(kind, type):
            raise TypeError(f"{handler.__qualname__}: parameter {name!r} needs a class as its type")
        if kind is not CommandContext and dataclasses.is_dataclass(kind):
            args_types.append(kind)
        params.append((name, kind))
    if len(args_types) > 1:
        raise TypeError(f"{handler.__qualname__}: at most one argument dataclass, got {len(args_types)}")
    return tuple(params), args_types[0] if args_types else NoArgs


class Registry:
    """The commands by name and alias. A plain class, not a dataclass: /help asks for it by type."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self._names: dict[str, Command] = {}

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

    def services(self) -> set[type[Any]]:
        """Every service class some command asks for."""
        return {kind for cmd in self.commands.values() for kind in cmd.services}

    def __iter__(self) -> Iterator[Command]:
        """Commands in the order /help lists them: the order they were declared."""
        return iter(self.commands.values())


REGISTRY = Registry()

F = TypeVar("F", bound=Callable[..., Awaitable[str]])


def command(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    usage: str,
    summary: str,
    permission: Permission = Permission.REP,
    reply_kind: str = "command_reply",
    registry: Registry = REGISTRY,
    target: Callable[..., Awaitable[int]] | None = None,
) -> Callable[[F], F]:
    """Declare a rep command; what it needs comes from the handler's signature (module docstring).
    ``target``: how the command finds its customer when the rep names none (default: "this
    customer")."""

    def decorate(handler: F) -> F:
        params, args_type = read_signature(handler)
        target_params = read_signature(target)[0] if target is not None else ()
        feature = handler.__module__.rsplit(".", 1)[-1]
        registry.add(
            Command(
                name,
                aliases,
                usage,
                summary,
                permission,
                handler,
                feature,
                reply_kind,
                params,
                args_type,
                target,
                target_params,
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
                number = int(word)
            except ValueError:
                raise UsageError(usage) from None
            if not fits_id(number):  # a 20-digit "number" overflows the database: usage, not a crash
                raise UsageError(usage)
            values[spec.name] = number
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
