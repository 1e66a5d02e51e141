"""The process steps the objection script library is written for.

A business names its own pipeline stages (an education business: 咨询, 试听, 报名, 续费, 转介绍);
the shipped scripts name these steps instead, and each configured stage says which steps it is
(``[[stages]] steps``). A stage without ``steps`` is the step of its own key, so the default
pipeline (whose keys are these steps) needs no mapping.
"""

from __future__ import annotations

PROCESS_STEPS: tuple[str, ...] = (
    "stranger",  # a new friend who has not engaged yet
    "potential",  # engaged: asking questions
    "intent",  # serious interest: a test drive, a trial lesson, a quote
    "ordered",  # bought, enrolled, paid the deposit
    "repeat",  # bought again, renewed
    "koc",  # a fan who refers others
)
