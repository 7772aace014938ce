"""The examination curve of the logged feed, estimated from the log, and the propensity weights
that undo it.

A click on position p needs the user to look at p (examination) and to like what is there:
P(click | p, item) = e(p) · r(item) (the position-based model; Craswell et al., WSDM 2008, which
is also the world's click model). A ranker learning from raw clicks learns "was on top" as much
as "was relevant". With e known, weighting each click by 1 / e(p) makes the expected weighted
clicks proportional to relevance whatever the position (inverse propensity scoring: Joachims,
Swaminathan & Schnabel, "Unbiased Learning-to-Rank with Biased Feedback", WSDM 2017).

e is not logged. The logger is randomized (a Plackett-Luce draw from a pool, world/policy.py), so
the same article, shown to the same region in the same time bucket (a *context* q), lands at
different positions by chance; how its click rate falls with position measures e. This is
intervention harvesting (Agarwal et al., "Estimating Position Bias without Intrusive
Interventions", WSDM 2019). Estimator: the maximum-likelihood fit of the log-linear model

    clicks_qp ~ Poisson(views_qp · e_p · r_q)

(a good approximation of the Bernoulli model when e·r is small: feed CTRs are a few %), solved by
iterative proportional fitting (Deming & Stephan, 1940), alternating

    r_q = Σ_p clicks_qp / Σ_p views_qp e_p        e_p = Σ_q clicks_qp / Σ_q views_qp r_q

A context seen at one position only fits its own clicks exactly and says nothing about e, as it
should; no prior is needed. The naive curve (CTR by position over everything) is biased toward
the top, because the logger puts better articles there more often; ``naive`` reports it for
comparison. Only ratios are identifiable (clicks see e · r), so e(0) = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError

F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ExaminationCurve:
    """``probs[p]``: P(examined at position p) / P(examined at 0), for p = 0..k-1."""

    probs: F64Array
    naive: F64Array  # CTR at p / CTR at 0, no contexts (biased; for comparison)
    iterations: int
    views: int  # shown (position, item) cells it was estimated from
    clicks: int

    def weights(self, positions: IntArray, clip: float = 20.0) -> F64Array:
        """Inverse propensities 1 / e(p), at most ``clip`` (a far, rarely clicked position must
        not let one click dominate the training set: the usual variance cap, Joachims 2017)."""
        e = self.probs[np.clip(positions, 0, self.probs.size - 1)]
        out: F64Array = np.minimum(1.0 / np.maximum(e, 1e-12), clip)
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "probs": [round(float(x), 6) for x in self.probs],
            "naive": [round(float(x), 6) for x in self.naive],
            "iterations": self.iterations,
            "views": self.views,
            "clicks": self.clicks,
        }


def estimate(
    positions: IntArray,
    contexts: IntArray,
    clicked: npt.NDArray[np.bool_],
    *,
    iterations: int = 500,
    tol: float = 1e-9,
) -> ExaminationCurve:
    """Fit e from shown cells: the position, the context (any integer key) and the click of
    every (impression, position) that showed an item. Stops when no e_p moves by ``tol``."""
    p = np.asarray(positions, np.int64)
    q = np.asarray(contexts, np.int64)
    c = np.asarray(clicked, bool).astype(np.float64)
    if not (p.size == q.size == c.size) or p.size == 0:
        raise InputError(f"examination: {p.size} positions, {q.size} contexts, {c.size} clicks")
    k = int(p.max()) + 1
    clicks_p = np.bincount(p, weights=c, minlength=k)
    if clicks_p[0] <= 0:
        raise InputError("examination: no clicks at the top position to compare with")
    views_p = np.bincount(p, minlength=k).astype(np.float64)
    naive = (clicks_p / np.maximum(views_p, 1.0)) / (clicks_p[0] / views_p[0])
    _, q = np.unique(q, return_inverse=True)
    clicks_q = np.bincount(q, weights=c)
    e = np.ones(k)
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007 - the count is reported
        r = clicks_q / np.maximum(np.bincount(q, weights=e[p]), 1e-300)
        new = clicks_p / np.maximum(np.bincount(p, weights=r[q], minlength=k), 1e-300)
        new /= new[0]
        moved = float(np.max(np.abs(new - e)))
        e = new
        if moved < tol:
            break
    return ExaminationCurve(e, naive, done, int(p.size), int(c.sum()))
