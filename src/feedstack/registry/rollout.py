"""The rollout controller: observed metrics of canary and control -> a decision. Pure.

Guardrails (any breach rolls the canary back at once, whatever its step):
  - latency: canary p99 above ``latency.p99_alert_ms`` and above control's p99 (a slowdown that
    hits both arms is an incident, not the canary's fault);
  - errors / fallbacks: canary rate above its cap (``registry.max_error_rate``,
    ``max_fallback_rate``) and above control's rate;
  - CTR: the mSPRT (registry/stats.py) says the canary's CTR is lower, at level ``ctr_alpha``;
    valid under a look every minute (Johari et al. 2022).
Rates and latency are judged once the canary has ``guardrail_min_requests`` requests; the CTR test
needs nothing of the kind, since its error rate holds at every sample size.

Without a breach the canary climbs ``canary_steps_pct``: it steps up once it has held the current
step ``step_min_minutes`` and served ``step_min_requests`` there; from the last step below 100 % it
is promoted (it becomes the champion). Otherwise it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feedstack.core.errors import InputError
from feedstack.core.spec import Spec
from feedstack.registry.stats import Ratio, RatioMoments, msprt, stratified

Action = Literal["hold", "step_up", "promote", "rollback"]


@dataclass(frozen=True)
class ArmObservation:
    """What one arm served since the canary started (cumulative counters)."""

    requests: int
    errors: int = 0
    fallbacks: int = 0
    latency_p99_ms: float = 0.0  # over a recent window (the last step), not since the start
    ctr: RatioMoments = field(default_factory=RatioMoments)  # clicks over impressions
    # The same per step of the ramp-up (aligned between arms). When given, CTR is compared
    # step by step (stats.stratified): pooling steps confounds the arms with the time of day.
    ctr_by_step: tuple[RatioMoments, ...] = ()

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class StepProgress:
    """How long the canary has been at its current share."""

    share: float  # 0..1
    minutes: float
    canary_requests: int


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[float, ...]  # shares 0..1, increasing, ending at 1
    step_min_minutes: float
    step_min_requests: int
    guardrail_min_requests: int
    p99_alert_ms: float
    max_error_rate: float
    max_fallback_rate: float
    ctr_alpha: float
    ctr_mixture_sd: float

    @classmethod
    def from_spec(cls, spec: Spec) -> RolloutPolicy:
        r = spec.registry
        return cls(
            steps=tuple(s / 100.0 for s in r.canary_steps_pct),
            step_min_minutes=r.step_min_minutes,
            step_min_requests=r.step_min_requests,
            guardrail_min_requests=r.guardrail_min_requests,
            p99_alert_ms=spec.latency.p99_alert_ms,
            max_error_rate=r.max_error_rate,
            max_fallback_rate=r.max_fallback_rate,
            ctr_alpha=r.ctr_alpha,
            ctr_mixture_sd=r.ctr_mixture_sd,
        )

    def next_share(self, share: float) -> float:
        """The first step above ``share`` (1.0 at the top)."""
        return next((s for s in self.steps if s > share + 1e-12), 1.0)


@dataclass(frozen=True)
class Decision:
    action: Action
    share: float  # the canary share once the decision is applied
    reasons: tuple[str, ...]
    numbers: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "share": self.share,
            "reasons": list(self.reasons),
            "numbers": self.numbers,
        }


def decide(
    policy: RolloutPolicy,
    progress: StepProgress,
    canary: ArmObservation,
    control: ArmObservation,
) -> Decision:
    """The controller: see the module docstring for the rules, in the order applied."""
    ctr_control, ctr_canary = ctr_estimates(control, canary)
    seq = msprt(ctr_control, ctr_canary, policy.ctr_alpha, policy.ctr_mixture_sd)
    numbers: dict[str, Any] = {
        "share": progress.share,
        "minutes_at_step": round(progress.minutes, 3),
        "step_canary_requests": progress.canary_requests,
        "canary": _arm(canary),
        "control": _arm(control),
        "ctr_compared": "by step" if ctr_canary is not canary.ctr else "pooled",
        "ctr_lift": _finite(math.exp(seq.log_ratio) - 1 if math.isfinite(seq.log_ratio) else None),
        "ctr_lift_always_valid": [_finite(seq.lift_low), _finite(seq.lift_high)],
        "msprt_likelihood_ratio": _finite(seq.likelihood_ratio),
        "msprt_threshold": seq.threshold,
    }
    breaches: list[str] = []
    if canary.requests >= policy.guardrail_min_requests:
        if canary.latency_p99_ms > policy.p99_alert_ms and (
            canary.latency_p99_ms > control.latency_p99_ms
        ):
            breaches.append(
                f"latency p99 {canary.latency_p99_ms:.1f} ms > alert {policy.p99_alert_ms:.0f} ms"
                f" (control {control.latency_p99_ms:.1f} ms)"
            )
        if canary.error_rate > policy.max_error_rate and canary.error_rate > control.error_rate:
            breaches.append(
                f"error rate {canary.error_rate:.4f} > cap {policy.max_error_rate}"
                f" (control {control.error_rate:.4f})"
            )
        if canary.fallback_rate > policy.max_fallback_rate and (
            canary.fallback_rate > control.fallback_rate
        ):
            breaches.append(
                f"fallback rate {canary.fallback_rate:.4f} > cap {policy.max_fallback_rate}"
                f" (control {control.fallback_rate:.4f})"
            )
    if seq.rejects and seq.log_ratio < 0:
        breaches.append(
            f"CTR lower: lift {math.exp(seq.log_ratio) - 1:+.3f}, always-valid interval"
            f" [{seq.lift_low:+.3f}, {seq.lift_high:+.3f}] at alpha {policy.ctr_alpha}"
            f" (mSPRT LR {seq.likelihood_ratio:.3g} >= {seq.threshold:.0f})"
        )
    if breaches:
        return Decision("rollback", 0.0, tuple(breaches), numbers)

    waiting = []
    if progress.minutes < policy.step_min_minutes:
        waiting.append(f"{progress.minutes:.1f} of {policy.step_min_minutes:.0f} min at this step")
    if progress.canary_requests < policy.step_min_requests:
        waiting.append(
            f"{progress.canary_requests} of {policy.step_min_requests} canary requests at this step"
        )
    if waiting:
        return Decision("hold", progress.share, ("no guardrail breached", *waiting), numbers)
    nxt = policy.next_share(progress.share)
    if nxt >= 1.0:
        return Decision(
            "promote", 1.0, (f"held the last step ({progress.share:.0%}) with no breach",), numbers
        )
    return Decision(
        "step_up",
        nxt,
        (f"held {progress.share:.0%} for {progress.minutes:.0f} min with no breach",),
        numbers,
    )


class _ArmDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(ge=0)
    errors: int = Field(0, ge=0)
    fallbacks: int = Field(0, ge=0)
    latency_p99_ms: float = Field(0.0, ge=0)
    impressions: int = Field(0, ge=0)
    clicks: int = Field(0, ge=0)


class _ObservedDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    canary: _ArmDoc
    control: _ArmDoc


def observations_from_json(doc: Any, where: str) -> tuple[ArmObservation, ArmObservation]:
    """(canary, control) from ``{"canary": {...}, "control": {...}}``, cumulative counters as a
    scrape of the serving metrics gives them (requests, errors, fallbacks, latency_p99_ms,
    impressions, clicks). From counters alone, CTR's variance is taken as Poisson."""
    try:
        parsed = _ObservedDoc.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{where}: key '{key}' = {first.get('input')!r}: {first['msg']}") from None
    out = []
    for a in (parsed.canary, parsed.control):
        ctr = RatioMoments.from_totals(a.requests, a.clicks, a.impressions)
        out.append(ArmObservation(a.requests, a.errors, a.fallbacks, a.latency_p99_ms, ctr))
    return out[0], out[1]


def ctr_estimates(control: ArmObservation, canary: ArmObservation) -> tuple[Ratio, Ratio]:
    """Stratified by step when both arms give their steps, pooled otherwise."""
    steps = len(canary.ctr_by_step)
    if steps and steps == len(control.ctr_by_step):
        return stratified(control.ctr_by_step, canary.ctr_by_step)
    return control.ctr, canary.ctr


def _arm(a: ArmObservation) -> dict[str, Any]:
    return {
        "requests": a.requests,
        "error_rate": round(a.error_rate, 6),
        "fallback_rate": round(a.fallback_rate, 6),
        "latency_p99_ms": round(a.latency_p99_ms, 3),
        "impressions": a.ctr.sy,
        "clicks": a.ctr.sx,
        "ctr": round(a.ctr.ratio, 6),
    }


def _finite(x: float | None) -> float | None:
    """JSON has no inf/nan: unknown numbers are null."""
    return x if x is not None and math.isfinite(x) else None
