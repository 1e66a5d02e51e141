"""Tag syntax: free text, or ``group:value`` (an ASCII or full-width colon)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tag:
    group: str
    value: str

    def __str__(self) -> str:
        return f"{self.group}:{self.value}" if self.group else self.value


def parse_tag(text: str) -> Tag:
    cleaned = text.strip().replace("：", ":")
    group, sep, value = cleaned.partition(":")
    if sep and group.strip() and value.strip():
        return Tag(group.strip(), value.strip())
    return Tag("", cleaned)
