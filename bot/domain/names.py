"""How a message addresses a customer: the name a person would say, from a WeChat remark or nickname.

Nicknames carry sorting prefixes ("A-", "AAA"), phone numbers, emoji and decoration ("~~小美~~",
"★"); a message that says "A-张三13812345678🌸您好" reads like a bot. :func:`spoken_name` keeps the
name and drops the rest; when nothing is left the message simply says 您好.
"""

from __future__ import annotations

import re
import unicodedata

# a sorting prefix reps and customers put in front of names: "A-", "a_", "01.", "A01-", "AAA", "A 张三"
_SORT_PREFIX = re.compile(
    r"^(?:[A-Za-z]{1,3}\d{0,3}|\d{1,3})\s*[-_.、·|:：~]+\s*|^(?:A+|[A-Za-z0-9]{1,3}\s+)(?=[^\x00-\x7f])"
)
# phone numbers (mainland mobiles, also written 138-1234-5678) and other long digit runs (QQ, ids)
_PHONE = re.compile(r"\+?(?:86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|\d{5,}")
_BRACKETED = re.compile(r"[(（\[【〔{<《「『][^)）\]】〕}>》」』]*[)）\]】〕}>》」』]")
# characters a name keeps besides letters and digits: the middle dot of foreign names, spaces
_KEPT = frozenset("·• ")


def _keep(char: str) -> bool:
    return char in _KEPT or unicodedata.category(char)[0] in "LN"


def _strip_decoration(text: str) -> str:
    kept = "".join(c if _keep(c) else " " for c in text)
    return re.sub(r"\s+", " ", kept).strip(" ·•")


def clean_name(raw: str | None) -> str:
    """The spoken part of a nickname or remark; "" when nothing name-like is left."""
    text = unicodedata.normalize("NFKC", raw or "").strip()
    text = _PHONE.sub(" ", text)
    outside = _BRACKETED.sub(" ", text)
    if any(unicodedata.category(c)[0] == "L" for c in outside):
        text = outside  # "张三（宝马4S店）": the part outside the brackets is the name
    text = re.sub(r"^[^\w]+", "", text)  # leading decoration first: "~~A-张三" has a prefix too
    text = _strip_decoration(_SORT_PREFIX.sub("", text))
    if not any(unicodedata.category(c)[0] == "L" for c in text):
        return ""
    return text  # the caller cuts it to length (bot.domain.limits.MAX_NAME_CHARS)


def spoken_name(remark: str | None, nickname: str | None) -> str:
    """The rep's remark when set (cleaned too), else the cleaned nickname; "" when neither has a name."""
    return clean_name(remark) or clean_name(nickname)
