"""The three windows of the log and the two walks through them.

    [start, label)   warm-up: sources and features fill up; nothing is learned from it
    [label, eval)    ranker training rows: logged slates of clicked requests (``label_rows``)
    [eval, end)      evaluation: every clicked request, ranked by every model (``evaluate``)

Boundaries are on the replay's bucket grid. Each walk advances the replay bucket by bucket and
serves the requests of the bucket from the state at its start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.models.candidates.blend import Blend
from feedstack.models.rank.lgbm import Ranker
from feedstack.train.cache_rounding import CACHE_SUFFIX, cache_rounded
from feedstack.train.examination import ExaminationCurve
from feedstack.train.newslog import NewsLog
from feedstack.train.replay import Replay
from feedstack.train.requests import Requests, sample_unshown, serve, shown_positions
from feedstack.train.scoreboard import Scoreboard, slate_dcg
from feedstack.train.slates import LabelRows
from feedstack.train.source_audit import SourceAudit

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]
# Ground truth, when the log comes from a simulated world: expected clicks of each ranked list
# (user ids, ranked article ids, request times in Unix seconds) -> one float per list.
Oracle = Callable[[Sequence[str], Sequence[Sequence[str]], Sequence[float]], npt.NDArray[Any]]


@dataclass(frozen=True)
class Windows:
    start_s: float
    label_s: float
    eval_s: float
    end_s: float
    bucket_s: float

    @classmethod
    def of(cls, log: NewsLog, warmup_h: float, eval_h: float, bucket_s: float) -> Windows:
        def grid(t: float) -> float:
            return math.floor(t / bucket_s) * bucket_s

        start, label = grid(log.start_s), grid(log.start_s + warmup_h * 3600)
        eval_s = grid(log.end_s - eval_h * 3600)
        if not start < label < eval_s < log.end_s:
            hours = (log.end_s - log.start_s) / 3600
            raise InputError(
                f"the log spans {hours:.1f} h: too short for a {warmup_h} h warm-up and a "
                f"{eval_h} h evaluation window with a label window between"
            )
        return cls(start, label, eval_s, log.end_s, bucket_s)

    def to_json(self) -> dict[str, float]:
        return {
            "start": self.start_s,
            "label": self.label_s,
            "eval": self.eval_s,
            "end": self.end_s,
        }


def label_rows(
    replay: Replay,
    blend: Blend,
    requests: Requests,
    w: Windows,
    max_age_s: float,
    negatives: int,
    names: tuple[str, ...],
    cols: IntArray,
    seed: int,
    audit: SourceAudit | None = None,
) -> LabelRows:
    """Training rows of the label window: shown candidates, plus ``negatives`` never-shown
    candidates per request (the ranker orders all candidates, not only what was shown). With
    an ``audit``, the sources that found each clicked candidate (train/source_audit.py)."""
    rows = LabelRows(names)
    imp = replay.log.impressions
    rng = np.random.default_rng(seed)
    b = w.start_s
    while b < w.eval_s:
        replay.advance(b)
        sel = requests.between(max(b, w.label_s), b + w.bucket_s)
        if sel.size:
            cands, feats, _, _ = serve(replay, blend, imp.user[sel], max_age_s)
            pos = shown_positions(imp.items[sel], cands)
            keep = (pos >= 0) | sample_unshown(cands, pos, negatives, rng)
            req = sel[cands.row_user()][keep]
            clicked = (pos[keep] >= 0) & requests.clicked[req, np.maximum(pos[keep], 0)]
            rows.add(np.ascontiguousarray(feats[keep][:, cols]), req, pos[keep], clicked)
            if audit is not None:
                bits = cands.sources[keep]
                audit.add(bits[clicked], int(requests.clicked[sel].sum()), bits)
        b += w.bucket_s
    return rows


def evaluate(
    replay: Replay,
    blend: Blend,
    requests: Requests,
    w: Windows,
    max_age_s: float,
    rankers: Mapping[str, Ranker],
    cols: IntArray,
    k: int,
    curve: ExaminationCurve,
    oracle: Oracle | None = None,
    sample_rows: int = 32_000,
) -> tuple[Scoreboard, FloatMatrix]:
    """Every clicked request of the evaluation window, top-k by the blend's order and by every
    ranker, and each one's order of the shown slate (IPS gains from ``curve``); also returns up
    to ``sample_rows`` real candidate rows (for timing and checks)."""
    board = Scoreboard(k, replay.log.n_items, tuple(s.name for s in blend.sources))
    imp = replay.log.impressions
    sample: list[FloatMatrix] = []
    kept = 0
    b = w.eval_s
    while b < w.end_s:
        replay.advance(b)
        sel = requests.between(b, b + w.bucket_s)
        if sel.size:
            cands, feats, history, exclude = serve(replay, blend, imp.user[sel], max_age_s)
            rounded = np.ascontiguousarray(
                cache_rounded(cands, feats, blend.config.quotas)[:, cols]
            )
            feats = np.ascontiguousarray(feats[:, cols])
            first_stage = -np.arange(cands.n_rows, dtype=np.float32)
            scores = {"blend": first_stage}
            for name, ranker in rankers.items():
                scores[name] = ranker.predict(feats, num_threads=1)
                # The same ranker on the values the candidate cache will hand to serving.
                scores[name + CACHE_SUFFIX] = ranker.predict(rounded, num_threads=1)
            tops = {name: cands.top(s, k) for name, s in scores.items()}
            expected = None if oracle is None else _expected(replay.log, oracle, sel, tops)
            pos = shown_positions(imp.items[sel], cands)
            shown = pos >= 0
            group = cands.row_user()[shown]
            weights = requests.clicked[sel[group], pos[shown]] * curve.weights(pos[shown])
            scores["logged"] = -pos.astype(np.float32)
            slates = {
                name: slate_dcg(group, s[shown].astype(np.float64), weights, sel.size, k)
                for name, s in scores.items()
            }
            has_history = np.diff(history.indptr) > 0
            board.add(cands, requests.clicks_of(sel), has_history, exclude, tops, expected, slates)
            if kept < sample_rows:
                sample.append(feats)
                kept += feats.shape[0]
        b += w.bucket_s
    if not sample:
        raise InputError("no clicked request in the evaluation window")
    return board, np.concatenate(sample)


def _expected(
    log: NewsLog, oracle: Oracle, sel: IntArray, tops: Mapping[str, npt.NDArray[np.int32]]
) -> dict[str, npt.NDArray[np.float64]]:
    """The oracle's expected clicks of every model's list, and of the list the logger showed."""
    imp = log.impressions
    users = [log.user_ids[u] for u in imp.user[sel].tolist()]
    times = imp.time_s[sel].tolist()
    ids = log.article_ids
    out = {}
    lists_of: dict[str, npt.NDArray[np.integer[Any]]] = {**tops, "logged": imp.items[sel]}
    for name, top in lists_of.items():
        lists = [[ids[i] for i in row if i >= 0] for row in top.tolist()]
        out[name] = np.asarray(oracle(users, lists, times), dtype=np.float64)
    return out
