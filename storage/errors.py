"""Storage errors meant for people (light to import: the command line catches them)."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """The database cannot be used (cannot be reached or created, or its schema is newer than this
    code). The message is one sentence for people; it never holds the password."""


class SchemaUpgradeFailed(Exception):
    """The child process that brings the schema up to date ended without doing it (killed, crashed,
    or another salesbot's code ran). One sentence for people: the database itself may be fine."""


# how ``python -m storage.upgrade`` (a child process) marks its one line for people on stderr
UPGRADE_FAILED = "salesbot-upgrade: "
