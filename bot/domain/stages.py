"""The configured sales pipeline: stage order and names."""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import StageConfig


class Pipeline:
    def __init__(self, stages: Sequence[StageConfig]) -> None:
        self.stages = list(stages)
        self._order = {s.key: i for i, s in enumerate(self.stages)}

    @property
    def first(self) -> str:
        return self.stages[0].key

    def resolve(self, name: str) -> str | None:
        """A stage key from its key or label (case-insensitive), or None."""
        wanted = name.strip().casefold()
        for stage in self.stages:
            if wanted in (stage.key.casefold(), stage.label.casefold()):
                return stage.key
        return self.stage_of_step(wanted)

    def stage_of_step(self, step: str) -> str | None:
        """The first stage that is this process step (``koc``: whatever the business calls it)."""
        for stage in self.stages:
            if step in stage.script_steps:
                return stage.key
        return None

    def label(self, key: str) -> str:
        for stage in self.stages:
            if stage.key == key:
                return stage.label
        return key

    def script_stages(self, key: str) -> tuple[str, ...]:
        """The names a script may use for stage ``key``: the key and the process steps it maps to."""
        for stage in self.stages:
            if stage.key == key:
                return stage.script_steps
        return (key,)

    def is_before(self, first: str, second: str) -> bool:
        return self._order.get(first, -1) < self._order.get(second, -1)

    def describe(self) -> str:
        """The pipeline as a rep reads it: labels only (commands accept a label or a key)."""
        return " → ".join(s.label for s in self.stages)
