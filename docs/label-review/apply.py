"""Apply the blind label reviews to the corpus (reruns give the same result).

items.jsonl: every reviewed line (id, source file, text, the heads the audit doubted; controls
have none). reviewer-N.jsonl: one reviewer's blind labels (id, objection, signals). Each line was
read by two reviewers who never saw its label or the model's suggestion. A doubted head changes
only when both reviewers agree with each other and not with the line; controls change nothing and
measure how often a reviewer agrees with labels nobody doubted.

    python docs/label-review/apply.py            # report; --write edits the corpus, adds to changes.jsonl

Rounds: r-ids (2026-12-03, morning: 1,186 doubted lines + 210 controls), s-ids (2026-12-03, evening:
685 doubted lines not read before, most from the six newest files, + 130 controls), t-ids (2026-12-04:
480 doubted lines of the fourteen files added 2026-12-04 that nobody had read, + 150 controls), u-ids
(2026-12-04, later: 189 doubted lines of the five files added that morning, + 80 controls), v-ids
(2026-12-04, later still: 209 doubted lines of the six files added then, + 83 controls), w-ids
(the same hour: 159 doubted lines of the five files added after them, + 63 controls).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CORPUS = HERE.parent.parent / "bot" / "objections" / "data" / "corpus"
SIGNALS = ("buying_signal", "opt_out", "opt_out_soft", "referral")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(write: bool) -> None:
    items = {item["id"]: item for item in _jsonl(HERE / "items.jsonl")}
    reads: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(HERE.glob("reviewer-*.jsonl")):
        for row in _jsonl(path):
            reads.setdefault(row["id"], []).append(row)
    lines = {
        path.stem: [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        for path in sorted(CORPUS.glob("*.jsonl"))
    }
    changes: list[dict[str, Any]] = []
    agree: Counter[tuple[str, bool]] = Counter()
    control: Counter[tuple[str, bool]] = Counter()
    for item_id, item in items.items():
        pair = reads.get(item_id, [])
        if len(pair) != 2:
            continue
        rows = [r for r in lines[item["source"]] if r["text"] == item["text"]]
        if not rows:
            continue
        gold = rows[0]
        if not item["flagged"]:
            for r in pair:
                control["objection", r["objection"] == gold["objection"]] += 1
                for s in SIGNALS:
                    control[s, (s in r["signals"]) == (s in gold["signals"])] += 1
            continue
        for head in item["flagged"]:
            if head == "objection":
                a, b, given = pair[0]["objection"], pair[1]["objection"], gold["objection"]
            else:
                a, b, given = (
                    (head in pair[0]["signals"]),
                    (head in pair[1]["signals"]),
                    (head in gold["signals"]),
                )
            agree[head, a == b] += 1
            if a == b and a != given:
                changes.append(
                    {"source": item["source"], "text": item["text"], "head": head, "from": given, "to": a}
                )
                for row in rows:
                    if head == "objection":
                        row["objection"] = a
                    elif a:
                        row["signals"] = [*row["signals"], head]
                    else:
                        row["signals"] = [s for s in row["signals"] if s != head]
    for head in ("objection", *SIGNALS):
        n = agree[head, True] + agree[head, False]
        c = control[head, True] + control[head, False]
        if n or c:
            print(
                f"{head:<14} doubted {n:>4}: reviewers agree {agree[head, True] / max(n, 1):.0%}, "
                f"changed {sum(1 for x in changes if x['head'] == head):>4}; "
                f"controls: a reviewer agrees with the line {control[head, True] / max(c, 1):.0%}"
            )
    print(f"{len(changes)} changes" + ("" if write else " (none once applied; --write applies them)"))
    if not write:
        return
    with (HERE / "changes.jsonl").open("a", encoding="utf-8") as log:  # earlier rounds' changes stay
        log.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in changes))
    for stem, rows in lines.items():
        (CORPUS / f"{stem}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )


if __name__ == "__main__":
    main("--write" in sys.argv)
