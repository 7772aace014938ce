"""The retrain policy: a drift report in, a decision out (pure); a runner applies it or dry-runs.

Policy, in order:
1. no input feature drifted -> no retrain. Drift of the ranker's score alone (``score_features``)
   means the model sees the same inputs but answers differently: a serving or model problem to
   investigate (or roll back), which retraining on the same inputs would not fix.
2. the last training is younger than ``monitor.retrain_cooldown_h`` -> no retrain (a drift that
   persists after a fresh model would retrain in a loop; a human looks first).
3. otherwise retrain, naming the drifted features.

The runner takes the retrain action as a callable (the CLI passes ``feedstack train``'s runner),
so this layer never imports the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from feedstack.core.spec import Monitor
from feedstack.monitor.drift import DriftReport

SCORE_FEATURES = frozenset({"score"})


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[str, ...]
    features: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"retrain": self.retrain, "reasons": list(self.reasons), "features": self.features}


def retrain_policy(
    report: DriftReport,
    monitor: Monitor,
    *,
    now_s: float,
    last_trained_s: float | None,
    score_features: Collection[str] = SCORE_FEATURES,
) -> RetrainDecision:
    inputs = tuple(f for f in report.drifted if f not in score_features)
    scores = tuple(f for f in report.drifted if f in score_features)
    if not inputs:
        if scores:
            return RetrainDecision(
                False,
                (
                    f"only the score distribution drifted ({', '.join(scores)}): inputs are "
                    "stable, so investigate the model or serving path (roll back) instead",
                ),
                scores,
            )
        return RetrainDecision(False, ("no feature drifted",))
    if last_trained_s is not None:
        age_h = (now_s - last_trained_s) / 3600.0
        if age_h < monitor.retrain_cooldown_h:
            return RetrainDecision(
                False,
                (
                    f"drift in {', '.join(inputs)}, but the model is {age_h:.1f} h old "
                    f"< cooldown {monitor.retrain_cooldown_h} h: investigate",
                ),
                inputs,
            )
    return RetrainDecision(True, (f"drift in {', '.join(inputs)}",), inputs)


@dataclass(frozen=True)
class RetrainOutcome:
    decision: RetrainDecision
    dry_run: bool
    ran: bool
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.decision.to_json(),
            "dry_run": self.dry_run,
            "ran": self.ran,
            "result": self.result,
        }


def apply_retrain(
    decision: RetrainDecision, retrain: Callable[[], Any], *, dry_run: bool
) -> RetrainOutcome:
    """Run ``retrain`` when the decision says so and this is not a dry run."""
    if not decision.retrain or dry_run:
        return RetrainOutcome(decision, dry_run, ran=False)
    return RetrainOutcome(decision, dry_run, ran=True, result=retrain())
