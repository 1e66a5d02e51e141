"""The command registry and its typed argument parser."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.commands.context import CommandContext
from bot.commands.registry import NoArgs, Registry, Rest, UsageError, command, parse_args
from bot.services.profile import ProfileService
from storage.models import Customer


@dataclass(frozen=True)
class Mixed:
    word: str
    count: int
    rest: Rest = ""


@dataclass(frozen=True)
class Words:
    items: list[str]


@dataclass(frozen=True)
class Optional:
    query: str
    page: int = 1


def test_word_int_and_rest_keep_spacing() -> None:
    assert parse_args(Mixed, "alpha 3  the  rest ", "u") == Mixed("alpha", 3, "the  rest")
    assert parse_args(Mixed, "alpha 3", "u") == Mixed("alpha", 3, "")


def test_quotes_group_words() -> None:
    assert parse_args(Words, 'a "b c" d', "u") == Words(["a", "b c", "d"])
    assert parse_args(Mixed, '"two words" 2 x', "u") == Mixed("two words", 2, "x")


@pytest.mark.parametrize(
    ("args_type", "text"),
    [
        (Mixed, ""),
        (Mixed, "alpha"),
        (Mixed, "alpha three"),
        (Words, ""),
        (Optional, ""),
        (Optional, "q 2 extra"),
        (NoArgs, "surplus"),
    ],
)
def test_bad_words_raise_usage(args_type: type, text: str) -> None:
    with pytest.raises(UsageError, match=r"^usage line$"):
        parse_args(args_type, text, "usage line")


def test_optional_fields() -> None:
    assert parse_args(Optional, "q", "u") == Optional("q", 1)
    assert parse_args(Optional, "q 3", "u") == Optional("q", 3)


async def test_new_command_drops_into_a_registry_without_core_changes() -> None:
    registry = Registry()

    @command(
        "countdown",
        aliases=("倒计时",),
        usage="/countdown <deadline>",
        summary="s",
        registry=registry,
    )
    async def countdown(args: Optional) -> str:
        return f"{args.query}/{args.page}"

    cmd = registry.find("倒计时")
    assert cmd is not None and cmd.name == "countdown" and cmd.feature == "test_registry"
    assert cmd.args_type is Optional and not cmd.needs_customer and cmd.services == ()
    assert await cmd.handler(cmd.parse("月底 2")) == "月底/2"
    assert registry.suggest("countdwn") == "countdown"
    assert registry.suggest("zzz") is None
    with pytest.raises(ValueError, match="declared twice"):
        command("倒计时", usage="x", summary="y", registry=registry)(countdown)


async def test_the_signature_is_the_declaration() -> None:
    registry = Registry()

    @command("a", usage="/a", summary="s", registry=registry)
    async def a(ctx: CommandContext, args: Words, customer: Customer, profile: ProfileService) -> str:
        return ""

    @command("b", usage="/b", summary="s", registry=registry)
    async def b(ctx: CommandContext) -> str:
        return ""

    first, second = registry
    assert (first.name, first.args_type, first.needs_customer, first.services) == (
        "a",
        Words,
        True,
        (ProfileService,),
    )
    assert (second.args_type, second.needs_customer, second.services) == (NoArgs, False, ())
    assert registry.services() == {ProfileService}


def test_a_signature_that_cannot_be_injected_is_refused_at_import() -> None:
    registry = Registry()

    async def two_argument_types(first: Words, second: Mixed) -> str:
        return ""

    async def untyped(thing) -> str:  # type: ignore[no-untyped-def]
        return ""

    with pytest.raises(TypeError, match="at most one argument dataclass"):
        command("x", usage="/x", summary="s", registry=registry)(two_argument_types)
    with pytest.raises(TypeError, match="needs a class as its type"):
        command("y", usage="/y", summary="s", registry=registry)(untyped)


def test_help_order_is_the_feature_order() -> None:
    from bot.commands import FEATURES, REGISTRY

    features = [cmd.feature for cmd in REGISTRY]
    assert sorted(features, key=FEATURES.index) == features
    assert [cmd.name for cmd in REGISTRY][:3] == ["help", "tag", "untag"]
