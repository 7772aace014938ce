"""Offline evaluation of ranked candidate lists against the clicks of later requests.

One evaluated unit is a logged request (an impression with a click) in the evaluation window:
its candidates are generated from the state at the start of its bucket, every model orders them,
and the request's clicked articles are the truth. Articles already in the user's recent history
are excluded from candidates (a feed does not show what was just read), so they are also removed
from the truth: the truth is the *new* articles the user clicked. ``all_clicks_recall`` reports
the recall of every click, repeats included, for the record.

Metrics come from feedstack.models.metrics (NDCG@k, recall, coverage, novelty), averaged over
requests whose user had a history (the personalized case) and, separately, over cold requests.

Those clicks are confounded by exposure: a candidate the logger did not show could not be
clicked, so a model that imitates the logger scores well. ``slate_ndcg@k`` removes that: each
model reorders only the articles the request actually showed, and every click contributes
1 / log2(2 + its rank in that order), averaged with its inverse propensity 1 / e(p) at the logged
position as weight: the propensity-weighted estimator of a rank metric over relevant items
(Joachims, Swaminathan & Schnabel, WSDM 2017, §4; e from train/examination.py). Its expectation
does not depend on where the logger put the article, so neither exposure nor the logger's
position bias is rewarded; the logged order itself is scored the same way, for reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.models.candidates.blend import Candidates
from feedstack.models.metrics import coverage, ranking_metrics, recall_of_sets

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]


def slate_dcg(
    group: IntArray, scores: F64Array, weights: F64Array, n: int, k: int
) -> tuple[F64Array, F64Array]:
    """Per group (0..n-1), over its clicked rows (``weights`` > 0: the click's inverse
    propensity; 0 for an unclicked row): ``(Σ w · 1/log2(2 + rank), Σ w)``, rank = the row's
    place in its group ordered by ``scores`` (ties: row order), 0 beyond ``k``."""
    order = np.lexsort((-scores, group))
    g = group[order]
    rank = np.arange(g.size) - np.searchsorted(g, g, side="left")
    discount = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    w = weights[order]
    num: F64Array = np.bincount(g, weights=w * discount, minlength=n).astype(np.float64)
    den: F64Array = np.bincount(g, weights=w, minlength=n).astype(np.float64)
    return num, den


@dataclass
class Scoreboard:
    k: int
    n_items: int
    source_names: tuple[str, ...]
    tops: dict[str, list[npt.NDArray[np.int32]]] = field(default_factory=dict)
    truth: list[sp.csr_matrix] = field(default_factory=list)
    history: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    found: list[npt.NDArray[np.float64]] = field(default_factory=list)
    found_by: list[npt.NDArray[np.float64]] = field(default_factory=list)
    all_found: list[npt.NDArray[np.float64]] = field(default_factory=list)
    all_true: list[IntArray] = field(default_factory=list)
    expected: dict[str, list[npt.NDArray[np.float64]]] = field(default_factory=dict)
    slates: dict[str, list[tuple[F64Array, F64Array]]] = field(default_factory=dict)
    candidates: int = 0

    def add(
        self,
        cands: Candidates,
        clicked: sp.csr_matrix,
        has_history: npt.NDArray[np.bool_],
        excluded: sp.csr_matrix,
        tops: dict[str, npt.NDArray[np.int32]],
        expected: dict[str, npt.NDArray[np.float64]] | None = None,
        slates: dict[str, tuple[F64Array, F64Array]] | None = None,
    ) -> None:
        """One batch of requests: ``clicked`` (CSR, rows aligned with the candidate users) holds
        each request's clicks, ``excluded`` what the feed could not show them."""
        clicked = sp.csr_matrix(clicked, dtype=np.float32)
        clicked.data[:] = 1.0
        new = clicked - clicked.multiply(sp.csr_matrix(excluded, dtype=bool).astype(np.float32))
        new.eliminate_zeros()
        rows, n = cands.row_user(), cands.users.size
        hit = np.asarray(new[rows, cands.items]).ravel()
        any_hit = np.asarray(clicked[rows, cands.items]).ravel()
        self.found.append(np.bincount(rows, weights=hit, minlength=n).astype(np.float64))
        self.all_found.append(np.bincount(rows, weights=any_hit, minlength=n).astype(np.float64))
        self.all_true.append(np.diff(clicked.indptr).astype(np.int64))
        by = np.zeros((len(self.source_names), n))
        for s in range(len(self.source_names)):
            mine = hit * ((cands.sources >> np.uint32(s)) & np.uint32(1))
            by[s] = np.bincount(rows, weights=mine, minlength=n)
        self.found_by.append(by)
        self.truth.append(sp.csr_matrix(new))
        self.history.append(np.asarray(has_history, bool))
        self.candidates += cands.n_rows
        for name, top in tops.items():
            self.tops.setdefault(name, []).append(top[:, : self.k])
        for name, clicks in (expected or {}).items():
            self.expected.setdefault(name, []).append(clicks)
        for name, dcg in (slates or {}).items():
            self.slates.setdefault(name, []).append(dcg)

    def result(self, item_users: IntArray, n_users: int, live_items: int) -> dict[str, Any]:
        truth = sp.vstack(self.truth).tocsr()
        hist = np.concatenate(self.history)
        n_true = np.diff(truth.indptr).astype(np.int64)
        found = np.concatenate(self.found).astype(np.float32)
        by = np.concatenate(self.found_by, axis=1).astype(np.float32)
        size = int(truth.shape[0])
        out: dict[str, Any] = {
            "requests": size,
            "requests_with_history": int(hist.sum()),
            "candidates_per_request": self.candidates / max(1, size),
            "candidate_recall": recall_of_sets(found[hist], n_true[hist]),
            "candidate_recall_cold": recall_of_sets(found[~hist], n_true[~hist]),
            "candidate_recall_by_source": {
                name: recall_of_sets(by[s][hist], n_true[hist])
                for s, name in enumerate(self.source_names)
            },
            "all_clicks_recall": recall_of_sets(
                np.concatenate(self.all_found).astype(np.float32)[hist],
                np.concatenate(self.all_true)[hist],
            ),
            "models": {},
        }
        k = self.k
        for name, parts in self.tops.items():
            top = np.concatenate(parts)
            warm = ranking_metrics(top[hist], truth[hist], k, item_users, n_users)
            cold = ranking_metrics(top[~hist], truth[~hist], k)
            out["models"][name] = {
                f"ndcg@{k}": warm[f"ndcg@{k}"],
                f"recall@{k}": warm[f"recall@{k}"],
                f"mrr@{k}": warm[f"mrr@{k}"],
                f"novelty@{k}": warm[f"novelty@{k}"],
                f"coverage@{k}": coverage(top, live_items) if live_items else 0.0,
                f"ndcg@{k}_cold": cold[f"ndcg@{k}"],
            }
        for name, sums in self.slates.items():
            num = np.concatenate([p[0] for p in sums])[hist].sum()
            den = np.concatenate([p[1] for p in sums])[hist].sum()
            entry = out["models"].setdefault(name, {})
            entry[f"slate_ndcg@{k}"] = float(num / den) if den > 0 else 0.0
        if self.expected:
            # Ground truth from a simulated world: mean expected clicks per request of the list
            # shown in that order (requests with history).
            out["expected_clicks"] = {
                name: float(np.concatenate(parts)[hist].mean())
                for name, parts in self.expected.items()
            }
        return out
