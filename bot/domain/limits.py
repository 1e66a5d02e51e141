"""How long what reps type and what the bot writes may be: chat stays readable, rows stay small.

A rep who pastes a megabyte into ``/note`` is told the limit instead of getting hundreds of
console messages back; a customer's 100 KB display name does not make a 100 KB welcome.
"""

from __future__ import annotations

# what a rep stores
MAX_NOTE_CHARS = 1000
MAX_TAG_CHARS = 30
MAX_EXTRA_CHARS = 500  # text a rep appends to a /send script
MAX_LABEL_CHARS = 30  # an offer (/countdown) or product (/order) name: customers read it in every step
MAX_AUDIT_CHARS = 2000  # a command line as the audit log keeps it
# what the bot echoes
MAX_NAME_CHARS = 20  # a display name or remark in a template or a console line
MAX_QUOTE_CHARS = 200  # a customer's message quoted in the console
MAX_ECHO_CHARS = 100  # a rep's argument repeated in a reply (an unknown name, a search)
# a console message longer than the chat limit goes out in at most this many parts
MAX_PARTS = 5
CUT_MARK = "…"
TRUNCATED = "……（内容过长，后面的部分没有发出）"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - len(CUT_MARK)] + CUT_MARK


def split_message(text: str, limit: int, max_parts: int | None = None) -> list[str]:
    """Split at line boundaries into parts of at most ``limit`` characters (a longer single line is
    cut, as a last resort). With ``max_parts``, what does not fit in that many parts is dropped and
    the last part says so."""
    parts: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current:
        parts.append(current)
    if max_parts is not None and len(parts) > max_parts:
        parts = parts[:max_parts]
        parts[-1] = parts[-1][: limit - len(TRUNCATED)] + TRUNCATED
    return parts
