"""Generated article titles and text, from per-topic word lists in ``vocabulary.json``.

The text only needs to be plausible and topic-bearing (content-based candidate sources and text
features learn from it), not good. Word choices come from the caller's generator, so titles are
deterministic per seed. A topic or region missing from the vocabulary falls back to generic words,
so custom configs still work.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

_SENTENCES = 3


@cache
def vocabulary() -> dict[str, Any]:
    text = resources.files("feedstack.world").joinpath("vocabulary.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _topic_words(topic: str) -> dict[str, list[str]]:
    words: dict[str, list[str]] | None = vocabulary()["topics"].get(topic)
    if words is not None:
        return words
    generic = [topic, f"{topic} news", f"{topic} update"]
    return {"subjects": generic, "verbs": ["makes", "sees"], "objects": generic, "words": generic}


def write_headlines(
    topics: list[str], regions: list[str], rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """Titles and texts for articles of the given topic and region names (equal lengths)."""
    vocab = vocabulary()
    places: dict[str, list[str]] = vocab["places"]
    templates: list[str] = vocab["templates"]
    n = len(topics)
    # Draw every index up front, in a fixed shape, so the stream does not depend on word counts.
    picks = rng.integers(0, 1 << 30, size=(n, 4 + 5 * _SENTENCES))
    titles: list[str] = []
    texts: list[str] = []
    for i in range(n):
        w = _topic_words(topics[i])
        spot = places.get(regions[i], places["global"])
        row = picks[i].tolist()

        def pick(options: list[str], j: int, row: list[int] = row) -> str:
            return options[row[j] % len(options)]

        subject, verb, obj = pick(w["subjects"], 0), pick(w["verbs"], 1), pick(w["objects"], 2)
        title = f"{subject[0].upper()}{subject[1:]} {verb} {obj}"
        if regions[i] in places and regions[i] != "global":
            title += f" in {pick(spot, 3)}"
        sentences = []
        for s in range(_SENTENCES):
            j = 4 + 5 * s
            sentences.append(
                pick(templates, j).format(
                    subject=pick(w["subjects"], j + 1),
                    verb=pick(w["verbs"], j + 2),
                    object=pick(w["objects"], j + 3),
                    word=pick(w["words"], j + 4),
                    place=pick(spot, j + 4),
                )
            )
        titles.append(title)
        texts.append(" ".join(sentences))
    return titles, texts
