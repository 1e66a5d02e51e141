"""Secrets never reach a log line: puppet-service tokens, the web access token, database passwords.

:func:`add_secret` registers a value; from then on every log record created anywhere in the process
(our loggers, the Wechaty libraries' own loggers with their own handlers, pytest's capture) has it
replaced by ``***`` in its message, its arguments and its traceback text. The redaction runs in the
log record factory, so it cannot be bypassed by a logger that does not propagate or a handler added
later. Messages a person reads outside logging (``error: ...`` on stderr) go through :func:`redact`.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any
from urllib.parse import quote

MASK = "***"
# shorter values would redact ordinary words (a token is never this short)
MIN_SECRET_LENGTH = 6

_secrets: set[str] = set()
_installed = False


def add_secret(value: str | None) -> None:
    """Redact ``value`` from every log record from now on (and install the redaction)."""
    install()
    if value and len(value) >= MIN_SECRET_LENGTH:
        # also as gRPC and URLs quote it (a service's error message, logged by the HTTP/2 layer)
        _secrets.update({value, quote(value, safe="")})


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _contains_secret(value: object) -> bool:
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a broken __str__ is the formatter's problem, not ours
        return False
    return any(secret in text for secret in _secrets)


class RedactSecrets(logging.Filter):
    """Rewrites a record so no registered secret survives in what any handler formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        if _contains_secret(record.msg) or any(_contains_secret(arg) for arg in _args(record)):
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: keep the parts, redacted
                message = " ".join(str(part) for part in (record.msg, *_args(record)))
            record.msg, record.args = redact(message), ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            if _contains_secret(text):
                record.exc_text = redact(text)
        if record.stack_info and _contains_secret(record.stack_info):
            record.stack_info = redact(record.stack_info)
        return True


def _args(record: logging.LogRecord) -> tuple[Any, ...]:
    if isinstance(record.args, dict):
        return tuple(record.args.values())
    return tuple(record.args or ())


_FILTER = RedactSecrets()


def install() -> None:
    """Wrap the log record factory (once) so every record is redacted as it is made."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _FILTER.filter(record)
        return record

    logging.setLogRecordFactory(redacted_record)
