"""Named crash points for the crash tests, which kill the real CLI at an exact step.

``SALESBOT_CRASH_AT=<name>`` in the environment makes the process die (as from SIGKILL: no cleanup,
no flush) when it reaches :func:`crash_point` with that name. Unset, a crash point costs one
dictionary lookup.
"""

from __future__ import annotations

import os

CRASH_ENV = "SALESBOT_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)  # the exit status of a SIGKILLed process
