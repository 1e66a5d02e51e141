"""Reading speed: load time of the shipped model, and per-message latency of the full reader (model
plus the library's overrides) beside a baseline in the same run, the library's phrase scan alone
(what the reader was before the model).

    python bench/classify_bench.py [--rounds 20]

Target (issue 13): the packaged model loads in under 2 s; <= 1 ms per message at p99 in process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bot.config import load_config
from bot.objections.corpus import load_corpus
from bot.objections.library import normalize
from bot.objections.reader import load_classifier

ROOT = Path(__file__).resolve().parent.parent

LOAD = (
    "import time; t = time.perf_counter(); from bot.objections.model import MessageModel, PACKAGED_MODEL; "
    "MessageModel.load(PACKAGED_MODEL); print(time.perf_counter() - t)"
)


def load_seconds() -> float:
    """Import and load in a fresh interpreter, as `salesbot run` does at startup."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(result.stdout.strip())


def timings(read: Callable[[str], object], texts: list[str], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter_ns()
            read(text)
            samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return samples


def line(name: str, samples: list[float]) -> str:
    p99 = samples[int(len(samples) * 0.99)]
    return (
        f"{name:<26} mean {statistics.fmean(samples):7.1f}  median {statistics.median(samples):7.1f}  "
        f"p99 {p99:7.1f}  max {samples[-1]:8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    loads = sorted(load_seconds() for _ in range(3))
    classifier = load_classifier(load_config(str(ROOT / "config.toml")))
    library = classifier.library
    texts = [m.text for m in load_corpus()][:2000]
    texts += ["，".join(texts[i : i + 5]) for i in range(0, 500, 5)]  # long, pasted-together messages

    def phrases(text: str) -> object:
        norm = normalize(text)
        objections = library.objections.values()
        return [o.label for o in objections if o.triggers is not None and o.triggers.search(norm)]

    reader = timings(classifier.classify, texts, rounds)
    baseline = timings(phrases, texts, rounds)
    print(f"model import + load in a fresh process: {loads[1]:.2f} s (median of 3; min {loads[0]:.2f} s)")
    print(f"messages: {len(texts)} x {rounds} rounds; microseconds per message:")
    print(line("reader (model + overrides)", reader))
    print(line("baseline: phrase scan only", baseline))
    print(
        f"reader / baseline: mean {statistics.fmean(reader) / statistics.fmean(baseline):.1f}x, "
        f"p99 {reader[int(len(reader) * 0.99)] / baseline[int(len(baseline) * 0.99)]:.1f}x"
    )


if __name__ == "__main__":
    main()
