"""Named crash and pause points for the tests, which kill or freeze the real CLI at an exact step.

``SALESBOT_CRASH_AT=<name>`` in the environment makes the process die (as from SIGKILL: no cleanup,
no flush) when it reaches :func:`crash_point` with that name. Unset, a crash point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "SALESBOT_CRASH_AT"
PAUSE_ENV = "SALESBOT_PAUSE_AT"
_paused: set[str] = set()


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)  # the exit status of a SIGKILLed process


def pause_point(name: str) -> None:
    """``SALESBOT_PAUSE_AT=<name>``: the process stops itself (SIGSTOP) the first time it gets
    here, as a VM frozen or a long GC pause would; the test resumes it with SIGCONT."""
    if os.environ.get(PAUSE_ENV) == name and name not in _paused:
        _paused.add(name)
        os.kill(os.getpid(), signal.SIGSTOP)
