"""Drift statistics: a reference window (the training data) against a live window, per feature.

Pure numpy/scipy. For every feature:

- numeric: the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``: statistic D = the
  largest gap between the two empirical CDFs, and its p-value), plus PSI and KL over bins fixed
  from the reference: ``bins`` quantile bins of the reference (equal reference mass per bin), so
  the binning adapts to skewed features and is computed once per reference.
- categorical: PSI and KL over the reference's categories plus one "unseen" bin for live
  categories the reference never had (a new topic is drift, not an error).

Formulas (p = reference bin shares, q = live bin shares, both smoothed):

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)      Population Stability Index (Siddiqi, *Credit Risk
                                                 Scorecards*, 2006; Yurdakul, "Statistical
                                                 properties of the population stability index",
                                                 2018). It is KL(q||p) + KL(p||q).
    KL  = sum_i q_i * ln(q_i / p_i)              Kullback-Leibler divergence of the live window
                                                 from the reference, in nats (Cover & Thomas,
                                                 *Elements of Information Theory*, eq. 2.26).

An empty bin would make either infinite, so counts are smoothed with an additive pseudo-count of
0.5 per bin (the Jeffreys prior; Krichevsky-Trofimov) before normalizing.

Verdict (thresholds from the spec's ``drift`` section): a categorical feature drifts when
KL > ``kl_alert`` or PSI > ``psi_alert``. A numeric feature drifts when the KS test rejects
(p < ``ks_p_value``) *and* its binned KL or PSI is past threshold: on large windows KS alone
rejects for shifts too small to matter, and a monitor that checks every minute would raise a
false alarm every couple of hours at p = 0.01. Under no drift, binned KL is about
(bins - 1) / (2 n_live) (the chi-square approximation of the G-test), so the live window must
hold ``min_samples`` values before any verdict is given ("insufficient").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.core.spec import Drift, Monitor

F64 = npt.NDArray[np.float64]
Kind = Literal["numeric", "categorical"]
Verdict = Literal["drift", "ok", "insufficient"]
SMOOTHING = 0.5  # pseudo-count per bin (Jeffreys prior)
UNSEEN = "__unseen__"


def smoothed_shares(counts: npt.ArrayLike) -> F64:
    """Bin shares with SMOOTHING added to every count."""
    c = np.asarray(counts, dtype=np.float64) + SMOOTHING
    out: F64 = c / c.sum()
    return out


def psi(p: F64, q: F64) -> float:
    """Population Stability Index of live shares ``q`` against reference shares ``p``."""
    return float(np.sum((q - p) * np.log(q / p)))


def kl(p: F64, q: F64) -> float:
    """KL(q || p) in nats: how far the live shares ``q`` are from the reference ``p``."""
    return float(np.sum(q * np.log(q / p)))


@dataclass(frozen=True)
class NumericReference:
    """A numeric feature's reference: its sorted values and the inner quantile bin edges."""

    values: F64
    edges: F64  # inner edges; bins are (-inf, e0], (e0, e1], ..., (e_last, inf)
    counts: npt.NDArray[np.int64]

    @classmethod
    def of(cls, values: npt.ArrayLike, bins: int) -> NumericReference:
        v = _finite(values)
        # Edges are data values (inverted CDF), so a discrete feature gets its own values as
        # edges; ties merge bins.
        probs = np.linspace(0, 1, bins + 1)[1:-1]
        qs = np.quantile(v, probs, method="inverted_cdf") if v.size else np.zeros(0)
        edges = np.unique(qs)
        return cls(np.sort(v), edges, _bin_counts(v, edges))

    def counts_of(self, live: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return _bin_counts(_finite(live), self.edges)


@dataclass(frozen=True)
class CategoricalReference:
    categories: tuple[str, ...]  # + UNSEEN as the last bin
    counts: npt.NDArray[np.int64]

    @classmethod
    def of(cls, values: Sequence[Any] | npt.ArrayLike) -> CategoricalReference:
        cats, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
        return cls((*cats.tolist(), UNSEEN), np.append(counts, 0).astype(np.int64))

    def counts_of(self, live: Sequence[Any] | npt.ArrayLike) -> npt.NDArray[np.int64]:
        v = np.asarray(live).astype(str).ravel()
        known = np.asarray(self.categories[:-1])  # sorted: np.unique made them
        if known.size == 0:
            return np.array([v.size], dtype=np.int64)
        idx = np.clip(np.searchsorted(known, v), 0, known.size - 1)
        pos = np.where(known[idx] == v, idx, known.size)
        return np.bincount(pos, minlength=known.size + 1).astype(np.int64)


Reference = NumericReference | CategoricalReference


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: Kind
    n_reference: int
    n_live: int
    psi: float | None
    kl: float | None
    ks_statistic: float | None = None
    ks_p_value: float | None = None
    verdict: Verdict = "ok"
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.verdict == "drift")

    def to_json(self) -> dict[str, Any]:
        return {"drifted": list(self.drifted), "features": [f.to_json() for f in self.features]}


def reference_of(values: Sequence[Any] | npt.ArrayLike, kind: Kind, bins: int) -> Reference:
    if kind == "numeric":
        return NumericReference.of(values, bins)
    if kind == "categorical":
        return CategoricalReference.of(values)
    raise InputError(f"feature kind must be 'numeric' or 'categorical', got {kind!r}")


def kind_of(values: npt.ArrayLike) -> Kind:
    """Numbers and booleans are numeric; anything else (strings, objects) categorical."""
    dtype = np.asarray(values).dtype
    return "numeric" if dtype.kind in "iufb" else "categorical"


def compare(
    feature: str,
    reference: Reference,
    live: Sequence[Any] | npt.ArrayLike,
    drift: Drift,
    min_samples: int,
) -> FeatureDrift:
    """One feature's statistics and verdict, live window against its reference."""
    counts = reference.counts_of(live)
    n_live = int(counts.sum())
    n_ref = int(reference.counts.sum())
    kind: Kind = "numeric" if isinstance(reference, NumericReference) else "categorical"
    if n_live == 0 or n_ref == 0:
        return FeatureDrift(
            feature, kind, n_ref, n_live, None, None, verdict="insufficient", reasons=("no data",)
        )
    p, q = smoothed_shares(reference.counts), smoothed_shares(counts)
    d_psi, d_kl = psi(p, q), kl(p, q)
    divergences = []
    if d_kl > drift.kl_alert:
        divergences.append(f"KL {d_kl:.4f} > {drift.kl_alert}")
    if d_psi > drift.psi_alert:
        divergences.append(f"PSI {d_psi:.4f} > {drift.psi_alert}")
    ks_d = ks_p = None
    reasons: list[str] = []
    verdict: Verdict
    if isinstance(reference, NumericReference):
        from scipy.stats import ks_2samp

        res = ks_2samp(reference.values, _finite(live))
        ks_d, ks_p = float(res.statistic), float(res.pvalue)
        if ks_p < drift.ks_p_value and divergences:
            reasons = [f"KS p {ks_p:.2e} < {drift.ks_p_value}", *divergences]
    else:
        reasons = divergences
    if n_live < min_samples:
        verdict, reasons = "insufficient", [f"{n_live} live values < {min_samples}"]
    else:
        verdict = "drift" if reasons else "ok"
    return FeatureDrift(
        feature, kind, n_ref, n_live, d_psi, d_kl, ks_d, ks_p, verdict, tuple(reasons)
    )


def drift_report(
    reference: Mapping[str, Sequence[Any] | npt.ArrayLike],
    live: Mapping[str, Sequence[Any] | npt.ArrayLike],
    drift: Drift,
    monitor: Monitor,
    kinds: Mapping[str, Kind] | None = None,
) -> DriftReport:
    """Every feature present in both windows, in the reference's order.

    ``kinds`` overrides the kind inferred from the reference's dtype (an integer-coded category).
    """
    kinds = kinds or {}
    out = []
    for name, ref_values in reference.items():
        if name not in live:
            continue
        kind = kinds.get(name) or kind_of(ref_values)
        ref = reference_of(ref_values, kind, monitor.drift_bins)
        out.append(compare(name, ref, live[name], drift, monitor.drift_min_samples))
    return DriftReport(tuple(out))


def _finite(values: npt.ArrayLike) -> F64:
    v = np.asarray(values, dtype=np.float64).ravel()
    out: F64 = v[np.isfinite(v)]
    return out


def _bin_counts(values: F64, edges: F64) -> npt.NDArray[np.int64]:
    idx = np.searchsorted(edges, values, side="left")  # (e_{i-1}, e_i] -> bin i
    return np.bincount(idx, minlength=edges.size + 1).astype(np.int64)
