"""Loads the reader of customer messages a configuration asks for: the objection library (phrases
and scripts, data) and the trained model (the shipped one, or a business's own)."""

from __future__ import annotations

from pathlib import Path

from bot.config import Config
from bot.objections.artefact import CARD
from bot.objections.classifier import Classifier
from bot.objections.corpus import corpus_digest
from bot.objections.library import ObjectionLibrary
from bot.objections.model import PACKAGED_MODEL, MessageModel


def model_folder(config: Config) -> Path:
    return config.model_path or PACKAGED_MODEL


_loaded: dict[tuple[Path, float], MessageModel] = {}


def load_model(config: Config) -> MessageModel:
    """The configured model; a missing, unreadable or stale one is a clear ``ModelError``. A model
    is read once per process (and again when its files change): it is never modified after loading."""
    folder = model_folder(config).resolve()
    card = folder / CARD
    key = (folder, card.stat().st_mtime if card.exists() else 0.0)
    model = _loaded.get(key) or MessageModel.load(folder)
    model.check_corpus(corpus_digest(), folder)
    _loaded[key] = model
    return model


def load_library(config: Config) -> ObjectionLibrary:
    return ObjectionLibrary.load(config.templates_path, [s.key for s in config.stages])


def load_classifier(config: Config, library: ObjectionLibrary | None = None) -> Classifier:
    return Classifier(library or load_library(config), load_model(config))
