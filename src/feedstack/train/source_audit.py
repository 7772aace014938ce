"""Which candidate sources earn their place in the news blend: the per-source recall table.

The news recipe offers, besides its own sources (co-visitation, content, trending), the
interactions recipe's ALS and item-item graph filter, fitted once on the clicks before the label
window (their items are the log's articles; one published later scores 0 in them). Over the
label window's clicked requests, each source's *candidate recall* is the share of clicks among
the candidates it contributed, and its *unique* recall the share that no other kept source
contributed. Offered sources are dropped one at a time, the lowest unique recall first, while
that is below ``train.news.min_unique_recall`` (a source that finds only what others find costs
scoring time and features and adds nothing). The recipe's own sources always stay: trending is
what a cold user gets, content what a fresh article with no clicks yet gets, and a window of
past clicks cannot measure either (in a small world trending alone may list every live article,
and its unique recall says nothing about the others' worth). The table is reported whatever is
decided.

The window is the label window, not the evaluation window: choosing sources is training, and
the evaluation window stays unseen until the chosen model is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.models.candidates.als import ALSTrainer
from feedstack.models.candidates.base import CandidateSource
from feedstack.models.candidates.itemitem import ItemItemTrainer
from feedstack.models.interactions import InteractionData
from feedstack.train.newslog import NewsLog

OFFERED = ("als", "gfcf")  # the interactions sources the news recipe may take


def fit_offered(
    log: NewsLog, before_s: float, offered: tuple[str, ...], als: ALSTrainer
) -> list[CandidateSource]:
    """The offered sources, fitted on the clicks before ``before_s`` over every article."""
    c = log.clicks
    early = c.time_s < before_s
    if not offered or not early.any():
        return []
    data = InteractionData.from_pairs(c.user[early], c.item[early], log.n_users, log.n_items)
    out: list[CandidateSource] = []
    if "gfcf" in offered:
        rank = max(1, min(256, data.n_items - 1, data.n_users - 1))
        out.append(ItemItemTrainer(ideal_rank=rank, seed=als.seed).fit(data))
    if "als" in offered:
        out.append(als.fit(data))
    return out


@dataclass
class SourceAudit:
    """Source bits (blend tags) of every clicked candidate row, and the clicks they could find."""

    names: tuple[str, ...]
    bits: list[npt.NDArray[np.uint32]] = field(default_factory=list)
    row_bits: list[npt.NDArray[np.uint32]] = field(default_factory=list)  # every training row
    clicks: int = 0

    def add(
        self,
        clicked_bits: npt.NDArray[np.uint32],
        clicks: int,
        row_bits: npt.NDArray[np.uint32],
    ) -> None:
        self.bits.append(np.asarray(clicked_bits, dtype=np.uint32))
        self.row_bits.append(np.asarray(row_bits, dtype=np.uint32))
        self.clicks += int(clicks)

    def rows_found_by(self, kept: tuple[str, ...]) -> npt.NDArray[np.bool_]:
        """Training rows some kept source contributed (the others a kept-only blend lacks)."""
        bits = np.concatenate(self.row_bits) if self.row_bits else np.zeros(0, np.uint32)
        return np.asarray((bits & self._mask(kept)) != 0, dtype=bool)

    def table(self, kept: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Per source: candidate recall, unique recall among ``kept``, kept or not."""
        bits = np.concatenate(self.bits) if self.bits else np.zeros(0, np.uint32)
        denom = max(1, self.clicks)
        mask = self._mask(kept)
        out = {}
        for j, name in enumerate(self.names):
            mine = ((bits >> np.uint32(j)) & np.uint32(1)).astype(bool)
            others = (bits & mask & ~np.uint32(1 << j)) != 0
            out[name] = {
                "recall": round(float(mine.sum()) / denom, 4),
                "unique_recall": round(float((mine & ~others).sum()) / denom, 4),
                "kept": name in kept,
            }
        return out

    def decide(self, threshold: float, optional: tuple[str, ...] = OFFERED) -> tuple[str, ...]:
        """Drop the ``optional`` source with the lowest unique recall while it is below
        ``threshold``, one at a time (see the module)."""
        kept = tuple(self.names)
        while len(kept) > 1:
            table = self.table(kept)
            droppable = [n for n in kept if n in optional]
            if not droppable:
                break
            worst = min(droppable, key=lambda n: (table[n]["unique_recall"], n))
            if table[worst]["unique_recall"] >= threshold:
                break
            kept = tuple(n for n in kept if n != worst)
        return kept

    def _mask(self, kept: tuple[str, ...]) -> np.uint32:
        m = 0
        for j, name in enumerate(self.names):
            if name in kept:
                m |= 1 << j
        return np.uint32(m)
