"""Rep commands. Importing this package registers every command in ``REGISTRY``.

To add a command: a module here (one per feature) with an ``@command`` handler, named in
``FEATURES``. /help and the README list commands in this order, then in declaration order.
"""

import importlib

from bot.commands.registry import REGISTRY

FEATURES = (
    "help",
    "tagging",
    "stages",
    "koc",
    "notes",
    "cards",
    "replies",
    "scripts",
    "corrections",
    "scheduling",
    "digests",
    "broadcasts",
    "picking",
)

for _feature in FEATURES:
    importlib.import_module(f"bot.commands.{_feature}")

__all__ = ["FEATURES", "REGISTRY"]
