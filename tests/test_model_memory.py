"""The running bot reads messages without NumPy (issue 20): the loaded model is the artefact's bytes
(a trie of terms, 8-bit weights) read in plain Python, small in memory, and it reads every
message as NumPy over the same artefact does."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import tracemalloc
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import marisa_trie
import numpy as np
import pytest

from bot.cli import main
from bot.objections.artefact import ARRAYS, CLASSES, HEADS, ModelError
from bot.objections.corpus import load_corpus
from bot.objections.features import tokens
from bot.objections.model import PACKAGED_MODEL, MessageModel
from bot.objections.npz import NpzError, read_npz
from bot.objections.training import FloatArray, sigmoid, softmax
from tests.conftest import ROOT
from tests.test_reader import config_with_model


class NumpyModel:
    """The shipped artefact read with NumPy and a dict of its terms: the reference."""

    def __init__(self, folder: Path) -> None:
        card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        arrays = np.load(folder / ARRAYS, allow_pickle=False)
        terms = marisa_trie.Trie().frombytes(bytes(arrays["terms"]))
        self.vocabulary = dict(terms.items())
        self.idf = arrays["idf"].astype(np.float64)
        self.coef = arrays["weights"].astype(np.float64) * arrays["scales"].astype(np.float64)[:, None]
        self.intercept = arrays["intercept"]
        self.temperature = float(card["temperature"])
        self.platt = np.array(card["platt"], dtype=np.float64)

    def probabilities(self, text: str) -> tuple[FloatArray, FloatArray]:
        counts = Counter(i for i in map(self.vocabulary.get, tokens(text)) if i is not None)
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.idf[columns]
        norm = math.sqrt(float(values @ values))
        values = values / norm if norm else values
        scores = values @ self.coef[columns] + self.intercept
        objection, signals = scores[: len(CLASSES)], scores[len(CLASSES) :]
        return softmax(objection / self.temperature), sigmoid(signals * self.platt[:, 0] + self.platt[:, 1])


def test_the_loaded_model_reads_every_message_as_numpy_does() -> None:
    texts = [m.text for m in load_corpus()]
    for path in sorted((ROOT / "tests" / "data").glob("objections-holdout*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    texts += ["", "  ", "😀😀", "a" * 500, "价格\n太贵了", "w:价格", "b:太|贵"]
    model, reference = MessageModel.load(PACKAGED_MODEL), NumpyModel(PACKAGED_MODEL)
    worst, decided_otherwise, counted_otherwise = 0.0, [], []
    for text in texts:
        known = Counter(i for i in map(reference.vocabulary.get, tokens(text)) if i is not None)
        if model._rows(text) != known:  # one trie walk a position finds the same n-grams
            counted_otherwise.append(text)
        objection, signals = model.probabilities(text)
        expected_objection, expected_signals = reference.probabilities(text)
        worst = max(
            worst,
            float(np.max(np.abs(np.array(objection) - expected_objection))),
            float(np.max(np.abs(np.array(signals) - expected_signals))),
        )
        expected = model.decide(expected_objection.tolist(), expected_signals.tolist())
        if model.decide(objection, signals) != expected:
            decided_otherwise.append(text)
    # the sums run in another order than BLAS's: the last bits differ, never a reading
    assert len(texts) > 20_000 and not counted_otherwise, counted_otherwise[:5]
    assert worst < 1e-12 and not decided_otherwise, (worst, decided_otherwise[:5])


def test_the_loaded_model_is_small_in_memory() -> None:
    MessageModel.load(PACKAGED_MODEL)  # the segmenter's one-off costs are not the model's
    tracemalloc.start()
    try:
        model = MessageModel.load(PACKAGED_MODEL)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(model) > 200_000
    # the weights (a byte a head, a scale a term) and idf of ~230,000 terms: about 4.7 MB; the
    # trie (C++, not traced here) under 1 MB. A dict of the terms and float64 weights held about 40
    assert held < 6 * 2**20, f"{held / 2**20:.1f} MB"


def test_a_message_of_unknown_tokens_scores_the_intercepts_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MessageModel.load(PACKAGED_MODEL)
    # every real message has known terms (its first and last character marks at least)
    monkeypatch.setattr(model, "_rows", lambda text: Counter())
    assert model.scores("anything") == model._intercept
    objection, _signals = model.probabilities("anything")
    assert sum(objection) == pytest.approx(1.0) and model.predict_one("anything").objection is None


def test_the_npz_reader_reads_numpys_own_files(tmp_path: Path) -> None:
    arrays = {
        "weights": np.arange(-6, 6, dtype=np.int8).reshape(4, 3),
        "half": np.arange(12, dtype="<f2"),
        "terms": np.frombuffer("价格\nab".encode(), dtype=np.uint8),
        "idf": np.array([1.5, 2.25], dtype="<f4"),
        "empty": np.zeros((0, HEADS), dtype="<f8"),
    }
    np.savez_compressed(tmp_path / "a.npz", **arrays)  # type: ignore[arg-type]
    stored = read_npz(tmp_path / "a.npz")
    assert set(stored) == set(arrays)
    for name, array in arrays.items():
        assert stored[name].dtype == array.dtype.str and stored[name].shape == array.shape
        assert bytes(stored[name].data) == array.tobytes()


@pytest.mark.parametrize(
    ("array", "refused"),
    [
        (np.asfortranarray(np.zeros((3, 2), dtype="<f4")), "fortran order: True"),
        (np.zeros(3, dtype="<i8"), "<i8"),
        (np.zeros(3, dtype=">f4"), ">f4"),
    ],
)
def test_the_npz_reader_refuses_what_it_would_misread(
    tmp_path: Path, array: FloatArray, refused: str
) -> None:
    np.savez(tmp_path / "a.npz", x=array)
    with pytest.raises(NpzError, match=refused):
        read_npz(tmp_path / "a.npz")


def test_the_npz_reader_refuses_a_truncated_array(tmp_path: Path) -> None:
    data = io.BytesIO()
    np.save(data, np.zeros(10, dtype="<f8"))
    with zipfile.ZipFile(tmp_path / "a.npz", "w") as archive:
        archive.writestr("x.npy", data.getvalue()[:-8])
    with pytest.raises(NpzError, match="72 bytes of data for <f8 \\(10,\\)"):
        read_npz(tmp_path / "a.npz")


def _edit_card(folder: Path, **changes: object) -> None:
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    (folder / "model.json").write_text(json.dumps({**card, **changes}), encoding="utf-8")


def _rewrite_arrays(folder: Path, **changes: object) -> None:
    arrays: dict[str, object] = dict(np.load(folder / ARRAYS).items())
    np.savez_compressed(folder / ARRAYS, **{**arrays, **changes})  # type: ignore[arg-type]


def _flip_a_byte_inside(folder: Path) -> None:
    """Bit rot inside the compressed weights: the zip's own check finds it."""
    data = bytearray((folder / ARRAYS).read_bytes())
    with zipfile.ZipFile(folder / ARRAYS) as archive:
        entry = archive.getinfo("weights.npy")
    middle = entry.header_offset + 30 + len(entry.filename) + entry.compress_size // 2
    data[middle] ^= 0xFF
    (folder / ARRAYS).write_bytes(bytes(data))


def _cut_header(folder: Path) -> None:
    """A version 2 .npy cut inside its header."""
    with zipfile.ZipFile(folder / ARRAYS, "w") as archive:
        archive.writestr("idf.npy", b"\x93NUMPY\x02\x00\x10\x00\x00")


BREAKS: dict[str, tuple[Callable[[Path], object], str]] = {
    "format": (lambda folder: _edit_card(folder, format=1), "made by another salesbot version"),
    "card": (lambda folder: (folder / "model.json").write_text("[]"), "not a model card"),
    "garbage": (lambda folder: (folder / ARRAYS).write_bytes(b"PK\x03\x04 not a zip"), "unreadable model"),
    "bit rot": (_flip_a_byte_inside, "unreadable model (model.npz: damaged"),
    "header": (_cut_header, "unreadable model (idf.npy: cut short)"),
    "shape": (
        lambda folder: _rewrite_arrays(folder, weights=np.load(folder / ARRAYS)["weights"][:-1]),
        "incomplete model (weights: |i1",
    ),
    "trie": (
        lambda folder: _rewrite_arrays(folder, terms=np.load(folder / ARRAYS)["terms"][::-1].copy()),
        "incomplete model (terms: not the ones the card names)",
    ),
    "temperature": (lambda folder: _edit_card(folder, temperature=0), "incomplete model (temperature 0"),
    "idf": (
        lambda folder: _rewrite_arrays(folder, idf=np.zeros_like(np.load(folder / ARRAYS)["idf"])),
        "incomplete model (an idf that is not a positive number)",
    ),
}


@pytest.mark.parametrize("change", sorted(BREAKS))
def test_a_broken_model_is_one_clear_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(PACKAGED_MODEL, folder)
    breaks, said = BREAKS[change]
    breaks(folder)
    with pytest.raises(ModelError, match=re.escape(said)):
        MessageModel.load(folder)
    assert main(["check", "--config", str(config_with_model(tmp_path, folder))]) == 1
    err = capsys.readouterr().err
    assert said in err and "salesbot objections train" in err and "Traceback" not in err
