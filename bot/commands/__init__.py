"""Rep commands. Importing this package registers every command in ``REGISTRY``.

To add a command: a module here (one per feature) with an ``@command`` handler, imported below.
"""

from bot.commands import cards, help, notes, picking, replies, stages, tagging  # noqa: F401  (registers)
from bot.commands.registry import REGISTRY

__all__ = ["REGISTRY"]
