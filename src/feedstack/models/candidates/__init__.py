"""Candidate sources: the contract (``base``), implementations, and the blend.

``load_source(folder)`` reopens any saved source by the ``kind`` in its ``source.json``; the
implementation modules are imported only when needed (``implicit`` takes ~0.8 s to import).
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from feedstack.core.errors import InputError
from feedstack.models.candidates.base import CandidateSource, read_meta

# kind -> "module:class"; a new source is one module plus one line here.
KINDS = {
    "als": "feedstack.models.candidates.als:ALSSource",
    "gfcf": "feedstack.models.candidates.itemitem:ItemItemSource",
    "popular": "feedstack.models.candidates.popular:PopularSource",
    "covisit": "feedstack.models.candidates.covisit:CovisitSource",
    "content": "feedstack.models.candidates.content:ContentSource",
    "trending": "feedstack.models.candidates.trending:TrendingSource",
}


def load_source(folder: Path) -> CandidateSource:
    kind = read_meta(folder)["kind"]
    if kind not in KINDS:
        raise InputError(f"{folder}: unknown source kind {kind!r}; known: {sorted(KINDS)}")
    module, _, name = KINDS[kind].partition(":")
    cls: type[CandidateSource] = getattr(import_module(module), name)
    return cls.load(folder)
