"""``salesbot objections classify | eval | audit | train``: the reader of customer messages from the shell."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from bot.config import Config, load_config
from bot.errors import SalesbotError
from bot.objections.classifier import Classifier
from bot.objections.corpus import CORPUS_DIR, Message, corpus_digest, deduplicate, load_corpus, read_labelled
from bot.objections.evaluate import Reads, folds_text, leave_one_vertical_out, leave_one_writer_out
from bot.objections.evaluate import evaluate as score_reader
from bot.objections.model import PACKAGED_MODEL, MessageModel
from bot.objections.reader import load_classifier, load_library


def classify(config_path: str, lines: Iterable[str], out: TextIO) -> int:
    classifier = load_classifier(load_config(config_path))
    for line in lines:
        text = line.rstrip("\n")
        result = classifier.classify(text)
        reading = {
            "text": text,
            "objection": result.label,
            "confidence": result.confidence,
            "signals": list(result.signals),
        }
        print(json.dumps(reading, ensure_ascii=False), file=out, flush=True)
    return 0


def evaluate(
    config_path: str,
    files: Sequence[str],
    *,
    lovo: bool = False,
    lowo: bool = False,
    mistakes: int = 0,
    corpus: str = "",
) -> int:
    if not files and not lovo and not lowo:
        raise SalesbotError("objections eval: name a labelled JSONL file, or pass --lovo or --lowo")
    config = load_config(config_path)
    library = load_library(config)

    def train(messages: Sequence[Message]) -> Reads:
        return Classifier(library, MessageModel().fit(messages))

    folder = Path(corpus) if corpus else CORPUS_DIR
    splits = [
        (leave_one_vertical_out, "leave-one-vertical-out: a business the corpus never saw", lovo),
        (leave_one_writer_out, "leave-one-writer-out: new customers of a vertical the corpus covers", lowo),
    ]
    for split, title, wanted in splits:
        if not wanted:
            continue
        print(f"{title}; corpus {folder} ({corpus_digest(folder)}), one model per fold", file=sys.stderr)
        folds, pooled = split(
            load_corpus(folder), train, progress=lambda line: print(line, file=sys.stderr, flush=True)
        )
        print(folds_text(title, folds, pooled))
        _print_mistakes(pooled.mistakes, mistakes)
    if files:
        classifier = load_classifier(config, library)
        for file in files:
            report = score_reader(classifier, read_labelled(Path(file)))
            print(f"{file}\n{report.text()}")
            _print_mistakes(report.mistakes, mistakes)
    return 0


def _print_mistakes(mistakes: Sequence[tuple[str, str | None, str | None]], count: int) -> None:
    if count:
        print(f"\nfirst {min(count, len(mistakes))} of {len(mistakes)} misread messages (gold -> read):")
        for text, gold, guess in mistakes[:count]:
            print(f"  {gold or '-'} -> {guess or '-'}: {text}")


def _out_folder(config: Config, out: str, with_feedback: bool) -> Path:
    if out:
        return Path(out)
    if config.model_path is not None:
        if not with_feedback:
            raise SalesbotError(
                f"objections train: {config.model_path} ([objections] model) holds your own model; "
                "rebuild it with --with-feedback, or name another folder with --out"
            )
        return config.model_path
    if with_feedback:
        raise SalesbotError(
            "objections train --with-feedback: name the folder for your own model with --out, "
            "then set [objections] model to it in the config (the shipped model stays as it is)"
        )
    return PACKAGED_MODEL


async def train(config_path: str, out: str, *, with_feedback: bool = False, corpus: str = "") -> int:
    config = load_config(config_path)
    folder = _out_folder(config, out, with_feedback)
    corpus_folder = Path(corpus) if corpus else CORPUS_DIR
    messages = load_corpus(corpus_folder)
    feedback: list[Message] = []
    if with_feedback:
        from bot.services.feedback import load_corrections
        from storage.db import Database

        db = Database(config.database_url())
        try:
            await db.migrate()
            feedback = await load_corrections(db)
        finally:
            await db.close()
    # a rep's correction outranks a corpus line that folds to the same text
    training = deduplicate([*feedback, *messages])
    print(
        f"training on {len(training)} messages ({len(feedback)} corrections from the database)"
        if with_feedback
        else f"training on {len(training)} messages",
        file=sys.stderr,
        flush=True,
    )
    model = MessageModel().fit(training, corpus=corpus_digest(corpus_folder))
    model.card["feedback"] = len(feedback)
    model.save(folder)
    summary = model.card["out_of_fold"]
    print(
        f"model written to {folder}: out-of-fold (held-out verticals) macro-F1 {summary['macro_f1']:.3f}, "
        f"false-positive rate {summary['false_positive_rate']:.3f}; "
        "for an honest estimate run `salesbot objections eval --lovo`"
    )
    if with_feedback and config.model_path != folder:
        print(f'to use it, set [objections] model = "{folder}" in {config_path}')
    return 0


def audit(*, corpus: str = "", top: int = 30, out: str = "") -> int:
    """Rank corpus lines by how unlikely their label is to a model that never saw their vertical."""
    try:
        from bot.objections.audit import find_issues
    except ImportError:
        raise SalesbotError(
            "objections audit needs cleanlab: pip install 'salesbot[audit]' (the test extras include it)"
        ) from None
    folder = Path(corpus) if corpus else CORPUS_DIR
    messages = deduplicate(load_corpus(folder))
    print(
        f"auditing {len(messages)} messages of {folder} ({corpus_digest(folder)})",
        file=sys.stderr,
        flush=True,
    )
    issues = find_issues(messages)
    heads = Counter(issue.head for issue in issues)
    print(
        f"{len(issues)} suspect labels: "
        + ", ".join(f"{head} {count}" for head, count in sorted(heads.items(), key=lambda kv: -kv[1]))
    )
    for issue in issues[:top]:
        m = issue.message
        print(f"  {m.source:<20} {issue.head:<14} {issue.given} -> {issue.suggested}: {m.text}")
    if out:
        with Path(out).open("w", encoding="utf-8") as file:
            for issue in issues:
                file.write(json.dumps(issue.as_dict(), ensure_ascii=False) + "\n")
        print(f"every suspect line written to {out}; review them against {folder / 'GUIDE.md'}")
    return 0
