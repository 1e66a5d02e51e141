"""Tag syntax and vocabulary: free text, or ``group:value`` for a configured group.

Groups are named by key, label or alias (``预算:20-30万`` lands in the 消费 group); groups with a
value list accept only those values or their aliases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.config import TagGroup
from bot.domain.limits import MAX_ECHO_CHARS, MAX_TAG_CHARS, clip

COLONS = (":", "：")


@dataclass(frozen=True)
class Tag:
    group: str  # group key, "" for a free-text tag
    value: str


class TagRejected(ValueError):
    """The text names a configured group but a value it does not allow (message for the rep)."""


class TagVocabulary:
    def __init__(self, groups: Sequence[TagGroup]) -> None:
        self.groups = {g.key: g for g in groups}
        self._by_name: dict[str, TagGroup] = {}
        for group in groups:
            for name in (group.key, group.label, *group.aliases):
                self._by_name[name.casefold()] = group

    def parse(self, text: str) -> Tag:
        """Read what a rep typed. ``x:y`` with an unknown group ``x`` is a free-text tag."""
        cleaned = text.strip()
        for colon in COLONS:
            name, sep, value = cleaned.partition(colon)
            if not sep:
                continue
            if not name.strip():  # ":x" is neither a group tag nor a word a rep meant to keep
                raise TagRejected("冒号前要写分组名，如 预算:20-30万；不分组的标签不要带冒号")
            group = self._by_name.get(name.strip().casefold())
            if group is not None:
                if not value.strip():  # "渠道:" would store an empty value
                    raise TagRejected(f"「{group.label}」后面要写上内容，如 {group.label}:值")
                return Tag(group.key, self._value(group, value.strip()))
        if not cleaned:
            raise TagRejected("标签不能为空")
        return Tag("", self._short(cleaned))

    @staticmethod
    def _short(value: str) -> str:
        if len(value) > MAX_TAG_CHARS:
            raise TagRejected(f"标签太长（{len(value)} 个字），最多 {MAX_TAG_CHARS} 个字")
        return value

    def _value(self, group: TagGroup, value: str) -> str:
        value = group.value_aliases.get(value, value)
        if group.values and value not in group.values:
            allowed = "、".join(group.values)
            raise TagRejected(
                f"「{group.label}」没有「{clip(value, MAX_ECHO_CHARS)}」这个选项，可选：{allowed}"
            )
        return self._short(value)

    def label(self, group_key: str) -> str:
        group = self.groups.get(group_key)
        return group.label if group else group_key

    def display(self, tag: Tag) -> str:
        return f"{self.label(tag.group)}:{tag.value}" if tag.group else tag.value
