"""Rep commands. Importing this package registers every command in ``REGISTRY``.

To add a command: a module here (one per feature) with an ``@command`` handler, imported below.
"""

from bot.commands import (  # noqa: F401  (importing registers the commands)
    cards,
    corrections,
    digests,
    help,
    notes,
    picking,
    replies,
    scheduling,
    stages,
    tagging,
)
from bot.commands.registry import REGISTRY

__all__ = ["REGISTRY"]
