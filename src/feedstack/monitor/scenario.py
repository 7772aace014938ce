"""The drift-and-slowdown scenario: does the monitor notice, how fast, and does it stay quiet?

The simulated world plays ``reference_minutes`` of traffic (the reference window: what the model
was trained on), then ``steady_minutes`` of the same world (every minute a drift check and an
alert evaluation; any alert here is a false alarm), then injects at once (world/shift.py):

- a topic surge (``surge_share`` of everyone's interest goes to ``surge_topic``),
- a feature shift (dwell times x ``dwell_factor``),
- a slowdown of the serving path (request latency x ``slowdown_factor``),

and runs ``after_minutes`` more. Detection times are simulated minutes from the injection to the
end of the first minute whose check fires. It runs in seconds: the world is simulated one minute
per step, with no servers.

Monitored live values, per minute of simulated time: the topic of each clicked article
(categorical), each dwell time (numeric) and each click's position (numeric: a control that the
incident does not target much). Latency is not part of the world: each feed request gets a
latency from a lognormal model of a healthy server (``latency_median_ms``, ``latency_sigma``;
assumed, p99 ~ 96 ms at the defaults, inside the spec's 120 ms p95 objective), multiplied by
``slowdown_factor`` after the injection. Alerts are evaluated as the generated rules do: the p99
over the last 5 minutes above ``latency.p99_alert_ms`` for 2 minutes (exact quantile here,
``histogram_quantile`` in Prometheus), and the multi-window burn rates of the latency SLO.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.spec import Spec
from feedstack.monitor.detector import DriftDetector
from feedstack.monitor.drift import DriftReport
from feedstack.monitor.slo import Sample, evaluate, spec_slos
from feedstack.world import NewsWorld, WorldConfig
from feedstack.world.batch import CLICK, DWELL, IMPRESSION, EventBatch
from feedstack.world.shift import Shift
from feedstack.world.simulate import Simulation
from feedstack.world.timeline import to_us

US_PER_MIN = 60_000_000
P99_WINDOW_MIN = 5  # the rule's rate window
P99_FOR_MIN = 2  # the rule's "for"


@dataclass(frozen=True)
class ScenarioConfig:
    users: int = 60_000
    articles: int = 2_000
    seed: int = 0
    warmup_minutes: int = 30
    reference_minutes: int = 60
    steady_minutes: int = 60
    after_minutes: int = 15
    surge_topic: str = "sports"
    surge_share: float = 0.5
    dwell_factor: float = 2.0
    slowdown_factor: float = 2.5
    latency_median_ms: float = 30.0
    latency_sigma: float = 0.5


@dataclass
class ScenarioResult:
    config: ScenarioConfig
    injected_at: str
    reference_values: dict[str, int]
    steady_minutes: int
    false_alarms: dict[str, int]
    detected_after_min: dict[str, float | None]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The measurement record: no timeline."""
        d = self.to_json()
        d.pop("timeline")
        return d


def _live_values(world: NewsWorld, batch: EventBatch) -> dict[str, npt.NDArray[Any]]:
    clicks = batch.kind == CLICK
    topics = np.asarray(world.config.topics)
    return {
        "click_topic": topics[world.catalog.topic[batch.article[clicks]]],
        "dwell_ms": batch.dwell_ms[batch.kind == DWELL].astype(np.float64),
        "click_position": batch.position[clicks].astype(np.float64),
    }


@dataclass(frozen=True)
class Minute:
    """What one monitored minute produced, for a live consumer (monitor/live.py): minutes since
    the injection (<= 0 before it), the feed requests' latencies and the drift report."""

    after: int
    latency_ms: npt.NDArray[np.float64]
    drift: DriftReport


def run_drift_scenario(
    spec: Spec,
    cfg: ScenarioConfig | None = None,
    on_minute: Callable[[Minute], None] | None = None,
) -> ScenarioResult:
    """``on_minute`` is called after each monitored minute is evaluated."""
    cfg = cfg or ScenarioConfig()
    began = time.perf_counter()
    ref_end = cfg.warmup_minutes + cfg.reference_minutes
    total_min = ref_end + cfg.steady_minutes + cfg.after_minutes
    world = NewsWorld(
        WorldConfig(
            users=cfg.users,
            articles=cfg.articles,
            days=total_min / 1440,
            step_minutes=1,
            seed=cfg.seed,
        )
    )
    start = world.config.start
    inject_min = ref_end + cfg.steady_minutes
    injected = start + timedelta(minutes=inject_min)
    shift = Shift(to_us(injected), cfg.surge_topic, cfg.surge_share, cfg.dwell_factor)
    sim = Simulation(world, shift)
    lat_rng = np.random.default_rng([cfg.seed, 6])
    _, latency_slo = spec_slos(spec.latency, spec.monitor)
    alert_ms, slo_ms = spec.latency.p99_alert_ms, spec.latency.p95_ms

    reference: dict[str, list[npt.NDArray[Any]]] = {}
    detector: DriftDetector | None = None
    recent_latency: deque[npt.NDArray[np.float64]] = deque(maxlen=P99_WINDOW_MIN)
    pending_since: int | None = None
    samples: list[Sample] = [Sample(0.0, 0.0, 0.0)]
    good = total = 0.0
    false_alarms = {"drift": 0, "p99_latency": 0, "latency_burn": 0}
    detected: dict[str, float | None] = {}
    timeline: list[dict[str, Any]] = []
    for step, batch in enumerate(sim.batches()):
        minute = step + 1  # end of this step, minutes since start
        values = _live_values(world, batch)
        if minute <= cfg.warmup_minutes:
            continue  # the world starts with no popularity: not what a model trains on
        if minute <= ref_end:
            for k, v in values.items():
                reference.setdefault(k, []).append(v)
            continue
        if detector is None:
            detector = DriftDetector(
                {k: np.concatenate(v) for k, v in reference.items()},
                spec.drift,
                spec.monitor,
                kinds={"click_topic": "categorical"},
            )
        after = minute - inject_min  # > 0: minutes since the injection
        t_s = minute * 60.0
        detector.add(t_s, values)
        report = detector.evaluate(t_s)

        # Serving latency of this minute's feed requests (one per impression).
        n_req = int((batch.kind == IMPRESSION).sum())
        slow = cfg.slowdown_factor if after > 0 else 1.0
        lat_ms = (
            cfg.latency_median_ms
            * slow
            * np.exp(cfg.latency_sigma * lat_rng.standard_normal(n_req))
        )
        recent_latency.append(lat_ms)
        p99_ms = float(np.quantile(np.concatenate(recent_latency), 0.99))
        if p99_ms > alert_ms:
            pending_since = minute if pending_since is None else pending_since
        else:
            pending_since = None
        p99_firing = pending_since is not None and minute - pending_since >= P99_FOR_MIN
        good += float((lat_ms <= slo_ms).sum())
        total += n_req
        samples.append(Sample(t_s, good, total))
        burn = evaluate(latency_slo, samples)
        burn_firing = bool(burn.firing)
        if on_minute is not None:
            on_minute(Minute(after, lat_ms, report))

        firing = {f"drift:{name}" for name in report.drifted}
        if p99_firing:
            firing.add("p99_latency")
        if burn_firing:
            firing.add("latency_burn")
        if after <= 0:
            false_alarms["drift"] += len(report.drifted)
            false_alarms["p99_latency"] += int(p99_firing)
            false_alarms["latency_burn"] += int(burn_firing)
        else:
            for name in sorted(firing):
                detected.setdefault(name, float(after))
        timeline.append(
            {
                "minute_after_injection": after,
                "p99_ms": round(p99_ms, 2),
                "latency_burn_1h": round(burn.conditions[0].long_burn, 3),
                "firing": sorted(firing),
                **{
                    f"kl_{f.feature}": None if f.kl is None else round(f.kl, 5)
                    for f in report.features
                },
            }
        )
    for name in ("drift:click_topic", "drift:dwell_ms", "p99_latency", "latency_burn"):
        detected.setdefault(name, None)
    drifts = [v for k, v in detected.items() if k.startswith("drift:") and v is not None]
    detected["drift:any"] = min(drifts) if drifts else None
    return ScenarioResult(
        config=cfg,
        injected_at=injected.isoformat(),
        reference_values={k: int(sum(a.size for a in v)) for k, v in reference.items()},
        steady_minutes=cfg.steady_minutes,
        false_alarms=false_alarms,
        detected_after_min=dict(sorted(detected.items())),
        timeline=timeline,
        seconds=round(time.perf_counter() - began, 3),
    )
