"""How messages address a customer: the spoken part of a remark or nickname."""

from __future__ import annotations

import pytest

from bot.domain.names import clean_name, spoken_name
from bot.services.welcome import customer_variables
from storage.models import Customer


def customer(display_name: str) -> Customer:
    return Customer(
        account_id="demo",
        wechat_id="wx_c1",
        stage="stranger",
        display_name=display_name,
        remark="",
        source_channel="",
    )


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("A-张三13812345678🌸", "张三"),
        ("~~小美~~", "小美"),
        ("AAA王总", "王总"),
        ("A 张三", "张三"),
        ("a_李四", "李四"),
        ("01.李四", "李四"),
        ("~~A-张三~~", "张三"),
        ("张三 138-1234-5678", "张三"),
        ("张三+86 13812345678", "张三"),
        ("张三（宝马4S店）", "张三"),
        ("【小美】", "小美"),
        ("★Lucy★", "Lucy"),
        ("Tom Lee", "Tom Lee"),
        ("阿卜杜·热合曼", "阿卜杜·热合曼"),
        ("小美 ♥ 2026", "小美 2026"),
        ("🌸🌸", ""),
        ("A-", ""),
        ("13812345678", ""),
        ("~~~", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_name(raw: str | None, name: str) -> None:
    assert clean_name(raw) == name


@pytest.mark.parametrize(
    ("remark", "nickname", "name"),
    [
        ("王总", "A-王大锤🌸", "王总"),  # the rep's remark wins
        ("A-王总13812345678", "大锤", "王总"),  # and is cleaned too
        ("", "A-王大锤🌸", "王大锤"),
        ("13812345678", "🌸", ""),  # nothing name-like: the message says 您好
        (None, None, ""),
    ],
)
def test_spoken_name(remark: str | None, nickname: str | None, name: str) -> None:
    assert spoken_name(remark, nickname) == name


def test_a_sorting_prefix_of_letters_and_digits_is_dropped() -> None:
    assert clean_name("A01-王女士") == "王女士"
    assert clean_name("B12_李总") == "李总"


def test_a_name_too_long_to_say_is_not_said() -> None:
    """A customer never reads a cut name ("李李李…您好"): the message says 您好 instead."""
    long = customer(display_name="李" * 100_000)
    assert customer_variables(long)["name"] == ""
    short = customer(display_name="A-张三13812345678")
    assert customer_variables(short)["name"] == "张三"
