"""Objection classification speed: per-message latency over the labelled sets, measured here.

    python bench/classify_bench.py [--rounds 50]

Reports mean, median, p99 and max per message. The target (issue 4) is <= 1 ms per message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bot.objections.classifier import Classifier
from bot.objections.library import ObjectionLibrary

ROOT = Path(__file__).resolve().parent.parent


def messages() -> list[str]:
    files = [*sorted((ROOT / "tests" / "data").glob("objections-*.jsonl"))]
    shared = ROOT.parent / "shared" / "eval" / "objections-dev.jsonl"
    if shared.exists():
        files.append(shared)
    texts = [
        json.loads(line)["text"] for f in files for line in f.read_text(encoding="utf-8").splitlines() if line
    ]
    # longer customer messages too: several sentences pasted together
    texts += ["，".join(texts[i : i + 5]) for i in range(0, len(texts), 5)]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    rounds = parser.parse_args().rounds
    started = time.perf_counter()
    classifier = Classifier(ObjectionLibrary.load(ROOT / "scripts_templates"))
    load_ms = (time.perf_counter() - started) * 1000
    texts = messages()
    samples = []
    for _ in range(rounds):
        for text in texts:
            t0 = time.perf_counter_ns()
            classifier.classify(text)
            samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    print(f"library load + training: {load_ms:.1f} ms")
    print(f"messages: {len(texts)} x {rounds} rounds = {len(samples)} classifications")
    print(
        f"per message (µs): mean {statistics.fmean(samples):.1f}, median {statistics.median(samples):.1f}, "
        f"p99 {samples[int(len(samples) * 0.99)]:.1f}, max {samples[-1]:.1f}"
    )


if __name__ == "__main__":
    main()
