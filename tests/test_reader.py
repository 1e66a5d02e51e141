"""Reading customer messages: the shipped model with the library's overrides, the corpus, training
(deterministic, with rep feedback), evaluation, and the model check that `salesbot check` runs."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.objections.classifier import Classifier
from bot.objections.corpus import CORPUS_DIR, Message, load_corpus, near_duplicates, read_labelled
from bot.objections.evaluate import evaluate, leave_one_vertical_out, score
from bot.objections.labels import OBJECTIONS, SIGNALS
from bot.objections.library import ObjectionLibrary, normalize
from bot.objections.model import PACKAGED_MODEL, MessageModel
from bot.objections.reader import load_classifier
from tests.conftest import ROOT, make_config, write_config

STAGES = ["stranger", "potential", "intent", "ordered", "repeat", "koc"]
DEV_SET = ROOT.parent / "shared" / "eval" / "objections-dev.jsonl"
# four sets of 110 written apart from the corpus, before it existed (no corpus line is a near duplicate
# of theirs); holdout3's phrasings served as examples in one writing brief, so it is the least independent
HELD_OUT = sorted((ROOT / "tests" / "data").glob("objections-holdout*.jsonl"))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return load_classifier(make_config())


# -- what the shipped model reads (messages written for these tests, not in the corpus) ----------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("这个价也太离谱了，便宜点呗", "price"),
        ("这个月工资还没发，手头真没钱", "budget"),
        ("隔壁店同款便宜八百", "comparison"),
        ("我再想想吧，过几天再说", "stalling"),
        ("你们不会是皮包公司吧", "trust"),
        ("听说用两个月就坏了", "quality"),
        ("坏了保修期外修要多少钱", "after_sales"),
        ("我是新手，这个太专业了我用不来", "fit"),
        ("我得回家问问我老婆", "authority"),
        # the examples: paraphrase, slang, a surface word pulling the wrong way
        ("让我缓两天", "stalling"),
        ("没见过你们的实体店啊", "trust"),
        ("京东旗舰店比你这儿少三百", "comparison"),
        ("过了保修期修一次大概什么价", "after_sales"),
        ("我是油皮，这款太滋润用不了", "fit"),
    ],
)
def test_each_objection(classifier: Classifier, text: str, label: str) -> None:
    result = classifier.classify(text)
    assert result.label == label, result
    assert 0 < result.confidence <= 1


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("定金交多少", "buying_signal"),
        ("周六能去试驾吗", "buying_signal"),
        ("退订", "opt_out"),
        ("别给我发消息了", "opt_out"),
        ("这类通知别发那么勤", "opt_out_soft"),
        ("我同事也想买，能一起吗", "referral"),
        ("推荐朋友来有奖励吗", "referral"),
    ],
)
def test_each_signal(classifier: Classifier, text: str, signal: str) -> None:
    result = classifier.classify(text)
    assert signal in result.signals, result
    assert not ({"opt_out", "opt_out_soft"} <= set(result.signals)), "opt-out covers the soft one"


def test_a_buying_cue_never_vetoes_an_objection(classifier: Classifier) -> None:
    result = classifier.classify("再让五百我立马转账")
    assert (result.label, result.signals) == ("price", ("buying_signal",))


@pytest.mark.parametrize(
    "text",
    [
        "爸妈那边没意见了，报名吧",
        "别家都问过了，还是你这儿划算",
        "售后上门这点不错",
        "分期的话每期多少",
        "课时一共几节",
        "保费按年交还是按月交",
        "价格没问题，什么时候能提车",
        "不用跟家里商量，我自己定",
        "你好",
        "好的谢谢",
    ],
)
def test_resolved_positive_and_factual_messages_are_not_objections(classifier: Classifier, text: str) -> None:
    assert classifier.classify(text).label is None


def test_a_negated_resolved_phrase_cancels_nothing(classifier: Classifier) -> None:
    assert classifier.classify("这价格不值得").label == "price"


def test_resolved_phrases_cancel_only_when_they_resolve(classifier: Classifier) -> None:
    """价格没问题 cancels a price reading; asked as a question, negated, or followed by a "but" it
    cancels nothing."""
    resolved = classifier._resolved
    assert resolved(normalize("价格没问题，什么时候能提车")) == {"price"}
    assert resolved(normalize("不用跟家里商量，我自己定")) == {"authority"}
    for text in ("你们这价格合理吗", "价格没问题，就是太贵了", "售后很好吗？听说坏了没人管", "这价格不合理"):
        assert resolved(normalize(text)) == set(), text


@pytest.mark.parametrize("text", ["这么贵值得吗", "你们这价格合理吗"])
def test_a_question_about_a_resolved_phrase_stays_an_objection(classifier: Classifier, text: str) -> None:
    assert classifier.classify(text).label == "price"


@pytest.mark.parametrize(
    "text", ["不太贵，挺好的", "也没有太贵，可以接受", "过几天我来提车", "推荐朋友来有奖金吗"]
)
def test_negated_or_ambiguous_phrases_trigger_nothing(classifier: Classifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.reason != "trigger" and result.label is None, result


def test_a_qualified_stop_is_soft_even_with_an_opt_out_phrase(classifier: Classifier) -> None:
    """别发了 is in the opt-out phrases; "after ten at night" makes it a soft one."""
    assert classifier.classify("别发了").opt_out
    result = classifier.classify("晚上十点过后就别发了 我睡得早")
    assert result.opt_out_soft and not result.opt_out


@pytest.mark.parametrize("text", ["不打扰你下班了，明天聊", "先忙了，晚点回你", "今天太累了不聊了"])
def test_ending_a_conversation_is_not_an_opt_out(classifier: Classifier, text: str) -> None:
    assert not {"opt_out", "opt_out_soft"} & set(classifier.classify(text).signals)


def test_an_opt_out_phrase_of_the_library_counts(tmp_path: Path) -> None:
    templates = tmp_path / "tpl"
    shutil.copytree(ROOT / "scripts_templates", templates)
    text = "求求你放过我吧"
    model = load_classifier(make_config()).model
    assert "opt_out" not in Classifier(ObjectionLibrary.load(templates, STAGES), model).classify(text).signals
    opt_out = templates / "objections" / "_opt_out.toml"
    opt_out.write_text(
        opt_out.read_text(encoding="utf-8").replace("phrases = [", 'phrases = [\n  "放过我",'),
        encoding="utf-8",
    )
    assert Classifier(ObjectionLibrary.load(templates, STAGES), model).classify(text).opt_out


def test_ops_can_add_a_trigger_without_code(tmp_path: Path) -> None:
    templates = tmp_path / "tpl"
    shutil.copytree(ROOT / "scripts_templates", templates)
    text = "荷包要瘦一圈了"
    model = load_classifier(make_config()).model
    assert Classifier(ObjectionLibrary.load(templates, STAGES), model).classify(text).label is None
    price = templates / "objections" / "price.toml"
    added = price.read_text(encoding="utf-8").replace("triggers = [", 'triggers = [\n  "荷包要瘦",')
    price.write_text(added, encoding="utf-8")
    result = Classifier(ObjectionLibrary.load(templates, STAGES), model).classify(text)
    assert (result.label, result.reason) == ("price", "trigger")


# -- honest numbers on messages the model never saw --------------------------------------------


@pytest.mark.parametrize("held_out", HELD_OUT, ids=lambda p: p.stem)
def test_held_out_sets_written_apart_from_the_corpus(classifier: Classifier, held_out: Path) -> None:
    """Floors a little under today's scores: a regression in the reader fails here."""
    report = evaluate(classifier, read_labelled(held_out))
    assert report.macro_f1 >= 0.84, report.text()
    assert report.false_positive_rate <= 0.08, report.text()


@pytest.mark.skipif(
    not DEV_SET.exists(), reason="shared/eval is beside the checkout in CI and on dev machines"
)
def test_dev_set(classifier: Classifier) -> None:
    report = evaluate(classifier, read_labelled(DEV_SET))
    assert report.macro_f1 >= 0.90, report.text()
    assert report.false_positive_rate <= 0.08, report.text()


def test_scoring_counts_correctly() -> None:
    rows = [
        (Message("a", "price", ("referral",)), "price", ("referral",)),
        (Message("b", "budget"), "price", ()),
        (Message("c", None), None, ("referral",)),
        (Message("d", None, ("opt_out",)), "trust", ("opt_out",)),
    ]
    report = score(rows)
    price = report.label("price")
    assert (price.precision, price.recall) == (0.5, 1.0)
    assert report.false_positive_rate == 0.5
    assert report.macro_f1 == pytest.approx((2 / 3) / 9)
    referral = report.signal("referral")
    assert (referral.precision, referral.recall) == (0.5, 1.0)
    assert report.signal("opt_out").f1 == 1.0


def _macro_and_false_alarms(probabilities: Any, y: Any, thresholds: Any) -> tuple[float, float]:
    import numpy as np

    best = np.argmax(probabilities[:, 1:], axis=1)
    confident = probabilities[np.arange(len(y)), best + 1] >= thresholds[best]
    predicted = np.where(confident, best + 1, 0)
    f1s = []
    for label in range(1, len(OBJECTIONS) + 1):
        tp = int(np.sum((predicted == label) & (y == label)))
        wrong = int(np.sum(predicted == label)) + int(np.sum(y == label)) - 2 * tp
        f1s.append(2 * tp / (2 * tp + wrong) if tp else 0.0)
    return float(np.mean(f1s)), float(np.mean(predicted[y == 0] != 0))


def test_thresholds_are_the_best_within_the_false_alarm_cap() -> None:
    """The per-label thresholds keep false alarms under the cap, and no other choice of grid values
    does better within it: not a local search from any start, not one label's threshold moved, not
    thousands of random choices."""
    import numpy as np

    from bot.objections.training import _OBJECTION_GRID, _objection_thresholds

    rng = np.random.default_rng(0)
    y = np.where(rng.random(800) < 0.6, 0, rng.integers(1, len(OBJECTIONS) + 1, size=800))
    scores = rng.normal(size=(800, len(OBJECTIONS) + 1))
    scores[np.arange(800), y] += rng.uniform(0.0, 3.0, size=800)  # informative, not perfect
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    cap = 0.05
    thresholds = _objection_thresholds(probabilities, y, cap)
    found, false_alarms = _macro_and_false_alarms(probabilities, y, thresholds)
    assert false_alarms <= cap

    def penalised(trial: Any) -> float:
        macro, alarms = _macro_and_false_alarms(probabilities, y, trial)
        return macro - 10.0 * max(0.0, alarms - cap)

    trials = [rng.choice(_OBJECTION_GRID, size=len(OBJECTIONS)) for _ in range(2000)]
    for start in (0.3, 0.5, 0.7):  # coordinate ascent, as the model once chose its thresholds
        local = np.full(len(OBJECTIONS), start)
        for _ in range(2):
            for label in range(len(OBJECTIONS)):
                options = [np.where(np.arange(len(OBJECTIONS)) == label, v, local) for v in _OBJECTION_GRID]
                local = max(options, key=penalised)
        trials.append(local)
    for label in range(len(OBJECTIONS)):
        trials.extend(np.where(np.arange(len(OBJECTIONS)) == label, v, thresholds) for v in _OBJECTION_GRID)
    for trial in trials:
        macro, alarms = _macro_and_false_alarms(probabilities, y, trial)
        assert alarms > cap or macro <= found + 1e-9, (trial, macro, found)


# -- the corpus ---------------------------------------------------------------------------------


def test_corpus_is_large_varied_and_well_formed() -> None:
    messages = load_corpus()
    verticals = {m.vertical for m in messages}
    assert len(messages) >= 5000 and len(verticals) >= 8
    no_objection = sum(1 for m in messages if m.objection is None)
    assert no_objection / len(messages) >= 0.35
    for label in OBJECTIONS:
        assert sum(1 for m in messages if m.objection == label) >= 300, label
    for signal in SIGNALS:
        assert sum(1 for m in messages if signal in m.signals) >= 150, signal
    assert (CORPUS_DIR / "GUIDE.md").exists()


def test_no_evaluation_message_is_in_the_corpus() -> None:
    """The held-out and dev sets stay unseen: no corpus line is a near duplicate of one of theirs."""
    evaluation = [m for path in [*HELD_OUT, DEV_SET] if path.exists() for m in read_labelled(path)]
    corpus = load_corpus()
    leaks = near_duplicates(evaluation, corpus)
    assert not leaks, [corpus[i].text for i in sorted(leaks)][:20]


def test_corpus_errors_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"text": "太贵", "objection": "price", "signals": []}\n{"text": "x", "objection": "greed"}\n'
    )
    config = write_config(tmp_path)
    assert main(["objections", "eval", str(bad), "--config", str(config)]) == 1
    assert "bad.jsonl:2: unknown objection 'greed'" in capsys.readouterr().err


def test_near_duplicates_are_found_across_splits() -> None:
    train = [Message("这个价格太贵了吧我真的买不起", "price"), Message("你们店在哪", None)]
    test = [Message("这个价格太贵了吧我真买不起", "price"), Message("质量怎么样啊", "quality")]
    assert near_duplicates(train, test) == {0}


# -- training, the artefact, feedback ----------------------------------------------------------


def small_corpus(folder: Path, per_vertical: int = 90) -> Path:
    """A slice of the real corpus: three verticals, a fixed sample of each."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("cars", "education", "skincare"):
        lines = (CORPUS_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        sample = random.Random(name).sample(lines, per_vertical)
        (folder / f"{name}.jsonl").write_text("\n".join(sample) + "\n", encoding="utf-8")
    return folder


def test_training_is_deterministic_and_the_artefact_round_trips(tmp_path: Path) -> None:
    corpus = small_corpus(tmp_path / "corpus")
    config = write_config(tmp_path)
    argv = ["objections", "train", "--corpus", str(corpus), "--config", str(config), "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    # the real command in another process, with another string-hash seed
    command = [sys.executable, "-m", "bot.cli", *argv, str(tmp_path / "b")]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    for name in ("model.json", "model.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    card = json.loads((tmp_path / "a" / "model.json").read_text(encoding="utf-8"))
    assert card["messages"] == 270 and set(card["verticals"]) == {"cars", "education", "skincare"}
    assert set(card["thresholds"]) == set(OBJECTIONS) | set(SIGNALS)
    assert "macro_f1" in card["out_of_fold"] and "signals" in card["out_of_fold"]

    messages = load_corpus(corpus)
    fitted = MessageModel().fit(messages)
    loaded = MessageModel.load(tmp_path / "a")
    for message in messages[:40]:
        # the fitted model holds what its artefact stores (8-bit weights): it reads the same
        assert fitted.probabilities(message.text) == loaded.probabilities(message.text)


def test_the_fitted_model_scores_as_scikit_learns_heads(tmp_path: Path) -> None:
    """Each term's row, in the trie's order and in 8 bits, still scores as the SVMs it came from."""
    from bot.objections.artefact import Settings
    from bot.objections.features import tokens
    from bot.objections.training import _fit_linear, _targets

    messages = load_corpus(small_corpus(tmp_path / "corpus"))
    fitted = MessageModel().fit(messages)
    documents = [tokens(m.text) for m in messages]
    objection, signals = _fit_linear(Settings(**fitted.params()), documents, *_targets(messages)).scores(
        documents
    )
    worst = 0.0
    for index, message in enumerate(messages):
        expected = [*objection[index].tolist(), *signals[index].tolist()]
        worst = max(worst, *(abs(a - b) for a, b in zip(fitted.scores(message.text), expected, strict=True)))
    assert worst < 0.02, worst


def test_leave_one_vertical_out_holds_out_whole_verticals(tmp_path: Path) -> None:
    messages = load_corpus(small_corpus(tmp_path / "corpus", 60))
    trained_on: list[set[str]] = []

    class Reader:
        def __init__(self, training: Any) -> None:
            trained_on.append({m.vertical for m in training})

        def read(self, text: str) -> tuple[str | None, tuple[str, ...]]:
            return None, ()

    folds, pooled = leave_one_vertical_out(messages, Reader)
    assert [f.group for f in folds] == ["cars", "education", "skincare"]
    assert trained_on == [{"education", "skincare"}, {"cars", "skincare"}, {"cars", "education"}]
    assert pooled.total == sum(f.report.total for f in folds)


def test_eval_lovo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = small_corpus(tmp_path / "corpus", 60)
    config = write_config(tmp_path)
    assert main(["objections", "eval", "--lovo", "--corpus", str(corpus), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "leave-one-vertical-out" in out and "skincare" in out and "macro-F1 (9 objections)" in out
    second = (CORPUS_DIR / "cars.2.jsonl").read_text(encoding="utf-8").splitlines()
    (corpus / "cars.2.jsonl").write_text("\n".join(second[:60]) + "\n", encoding="utf-8")
    assert main(["objections", "eval", "--lowo", "--corpus", str(corpus), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "leave-one-writer-out" in out and "cars.2 " in out and "cars " in out and "skincare" not in out


def test_classify_and_eval_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("太贵了\n你好\n定金交多少\n"))
    assert main(["objections", "classify", "--config", str(ROOT / "config.toml")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["text"], x["objection"], x["signals"]) for x in lines] == [
        ("太贵了", "price", []),
        ("你好", None, []),
        ("定金交多少", None, ["buying_signal"]),
    ]
    assert all(set(x) == {"text", "objection", "confidence", "signals"} for x in lines)
    assert all(0 <= x["confidence"] <= 1 for x in lines)

    data = tmp_path / "set.jsonl"
    data.write_text(
        '{"text": "太贵了", "objection": "price", "signals": []}\n'
        '{"text": "你好", "label": null}\n'
        '{"text": "退订", "objection": null, "signals": ["opt_out"]}\n',
        encoding="utf-8",
    )
    assert main(["objections", "eval", str(data), "--config", str(ROOT / "config.toml")]) == 0
    out = capsys.readouterr().out
    for name in (*OBJECTIONS, *SIGNALS):
        assert name in out
    assert "macro-F1 (9 objections)" in out
    assert "false-positive rate on no-objection messages: 0.000" in out
    assert main(["objections", "eval", "--config", str(ROOT / "config.toml")]) == 1
    assert "name a labelled JSONL file, or pass --lovo or --lowo" in capsys.readouterr().err


# -- the model check -----------------------------------------------------------------------------


def config_with_model(tmp_path: Path, folder: Path) -> Path:
    return write_config(
        tmp_path,
        (ROOT / "config.toml")
        .read_text(encoding="utf-8")
        .replace('templates_dir = "scripts_templates"', f'templates_dir = "{ROOT / "scripts_templates"}"')
        .replace('model = ""', f'model = "{folder}"'),
    )


def test_check_fails_clearly_on_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_with_model(tmp_path, tmp_path / "nowhere")
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "nowhere: no trained model here; run `salesbot objections train`" in err
    assert "Traceback" not in err


def test_check_fails_clearly_on_a_stale_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    shutil.copytree(PACKAGED_MODEL, folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    card["corpus"] = "0123456789abcdef"
    (folder / "model.json").write_text(json.dumps(card), encoding="utf-8")
    config = config_with_model(tmp_path, folder)
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "stale model: trained on corpus 0123456789abcdef" in err and "salesbot objections train" in err
    shutil.copytree(PACKAGED_MODEL, folder, dirs_exist_ok=True)
    assert main(["check", "--config", str(config)]) == 0


def test_the_shipped_model_is_trained_on_the_shipped_corpus() -> None:
    """`salesbot check` on the default config: fails when the corpus changed without retraining."""
    assert main(["check", "--config", str(ROOT / "config.toml")]) == 0


def test_train_never_overwrites_a_business_model_without_its_feedback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_with_model(tmp_path, tmp_path / "own")
    assert main(["objections", "train", "--config", str(config)]) == 1
    assert "holds your own model; rebuild it with --with-feedback" in capsys.readouterr().err
    assert not (tmp_path / "own").exists()


def test_train_with_feedback_needs_a_folder_for_the_business_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["objections", "train", "--with-feedback", "--config", str(config)]) == 1
    assert "--out" in capsys.readouterr().err


def test_audit_finds_planted_label_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = small_corpus(tmp_path / "corpus", per_vertical=300)
    planted: set[str] = set()
    for path in sorted(corpus.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for row in [r for r in rows if r["objection"] == "price"][:3]:  # a writer's slip: price read as none
            row["objection"] = None
            planted.add(row["text"])
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "suspects.jsonl"
    argv = ["objections", "audit", "--corpus", str(corpus), "--top", "5", "--out", str(out)]
    assert main([*argv, "--config", str(write_config(tmp_path))]) == 0
    printed = capsys.readouterr().out
    assert "suspect labels: objection" in printed and str(out) in printed
    suspects = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    found = {s["text"] for s in suspects if s["head"] == "objection" and s["given"] == "none"}
    # most slips are caught, and a slip is far likelier to be a suspect than an average line
    assert len(found & planted) > len(planted) / 2, (planted, found)
    doubted = {s["text"] for s in suspects if s["head"] == "objection"}
    assert len(found & planted) / len(planted) > 2 * len(doubted) / 900, len(doubted)
    qualities = [s["quality"] for s in suspects]
    assert qualities == sorted(qualities)
