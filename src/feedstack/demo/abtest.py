"""The demo's A/B test on live traffic: the champion against a challenger through `feedstack serve`.

1. The challenger: the ranker retrained at the model-selection table's runner-up size (the most
   accurate other size), a new model folder beside the champion. It is not a ``train`` record:
   the report's model section stays the champion's.
2. The champion (the model the train stage saved, whose candidate cache was built) pinned as the
   serving rollout state (``feedstack deploy``'s file), so the newest folder (the challenger) does
   not become what every server serves.
3. An experiment ``live-ab``: control = champion, b = challenger, 50/50 by a stable hash of the
   user id (``feedstack experiment start``).
4. ``feedstack serve`` in a child process; the simulated users (bench/live.py) request feeds, click
   through the world's click model and post their events back through the API. The server logs
   the experiment and arm with every impression.
5. The experiment stopped and analysed from the event log (``feedstack experiment status``): CTR
   per arm, the lift over the champion with its interval, the sample-ratio check; beside it the
   world's expected clicks per request of each arm (its true relevance, unseen by the server).

Recorded as the measurement kind ``abtest-live``; the report's CTR-lift answer reads it.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from feedstack.storage import measurements

if TYPE_CHECKING:
    from feedstack.demo.stages import DemoContext

EXPERIMENT = "live-ab"
RATE_PER_S = 40.0
SPEED = 360.0  # simulated seconds per wall second, as the demo's live run
# An A/B needs more requests than a latency run: twice the demo's online measurement length.
LENGTH_FACTOR = 2.0


def _challenger_size(train: dict[str, Any]) -> Any:
    """The runner-up of the model-selection table (highest NDCG@10 after the selected one)."""
    from feedstack.train.slates import RankerSize

    rows = [
        r
        for r in train.get("selection", [])
        if r.get("model") != train.get("selected") and "_" not in str(r.get("model"))
    ]
    if not rows:
        return RankerSize(30, 7)
    best = max(rows, key=lambda r: float(r.get("ndcg@10") or 0.0))
    return RankerSize(int(best["trees"]), int(best["leaves"]))


def _train_challenger(ctx: DemoContext, train: dict[str, Any]) -> dict[str, Any]:
    from feedstack.train.project import train_project

    size = _challenger_size(train)
    hours = 24.0 if ctx.days >= 3 else ctx.days * 8.0
    result = train_project(
        ctx.project, warmup_hours=hours, eval_hours=hours, sizes=(size,), repeats=20
    )
    return {"version": result["version"], "size": size.label, "selected": result["selected"]}


def stage_abtest(ctx: DemoContext) -> dict[str, Any]:
    """Champion vs challenger, 50/50, on live simulated traffic through `feedstack serve`."""
    from feedstack.bench.live import run_live_traffic
    from feedstack.bench.serve import ServerProcess, wait_ready
    from feedstack.registry.ab_status import experiment_status
    from feedstack.registry.experiment import (
        Arm,
        running_experiment,
        start_experiment,
        stop_experiment,
    )
    from feedstack.registry.state import RolloutState, save_rollout
    from feedstack.serve.auth import api_key_entry
    from feedstack.world import NewsWorld, load_world_config

    rec = measurements.latest(ctx.project / "measurements", "train")
    if rec is None:
        raise RuntimeError("no train measurement: the A/B needs the champion")
    train = rec["result"]
    # The champion is the model this run trained and built the candidate cache for (a rerun into
    # the same folder must not keep a previous run's rollout state).
    champion = str(train["version"])
    save_rollout(ctx.project, RolloutState(champion=champion))
    challenger = _train_challenger(ctx, train)
    now = datetime.now(UTC)
    arms = [Arm("control", champion, 0.5), Arm("b", challenger["version"], 0.5)]
    name = f"{EXPERIMENT}-{now:%Y%m%dt%H%M%S}"
    left = running_experiment(ctx.project)  # a run into the same folder that was cut short
    if left is not None:
        stop_experiment(ctx.project, left.name, now)
    start_experiment(ctx.project, name, arms, now)
    key = secrets.token_hex(16)
    env = dict(os.environ, FEEDSTACK_API_KEYS=api_key_entry(key, "feeds", "events"))
    args = ["serve", "--project", str(ctx.project), "--port", "0", "--grpc-port", "0", "--json"]
    seconds = LENGTH_FACTOR * ctx.online_seconds
    try:
        server = ServerProcess(args, env)
        try:
            url = str(server.addresses(timeout_s=180.0)["http"])
            wait_ready(url, timeout_s=180.0)
            config = load_world_config(ctx.world_dir)
            live = run_live_traffic(
                url,
                NewsWorld(config),
                config.start + timedelta(days=config.days),
                api_key=key,
                duration_s=seconds,
                rate_per_s=RATE_PER_S,
                speed=SPEED,
                seed=ctx.seed + 2,
                server_pid=server.proc.pid,
            )
        finally:
            code = server.stop()
    finally:
        stop_experiment(ctx.project, name, datetime.now(UTC))
    if code not in (0, -15):
        raise RuntimeError(f"feedstack serve exited {code}: {server.stderr_tail()}")
    status = experiment_status(ctx.project, name)
    result = _summary(status, live, champion, challenger, seconds)
    measurements.save(
        ctx.project / "measurements",
        measurements.record("abtest-live", result | {"status": status}),
    )
    return result


def _summary(
    status: dict[str, Any],
    live: dict[str, Any],
    champion: str,
    challenger: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    b = status["arms"]["b"]
    lift = b.get("lift") or {}
    truth = {arm: row.get("expected_clicks_per_request") for arm, row in live["arms"].items()}
    c, t = truth.get("control"), truth.get("b")
    true_lift = t / c - 1.0 if isinstance(c, float) and isinstance(t, float) and c > 0 else None
    return {
        "experiment": status["experiment"],
        "through": "feedstack serve (HTTP), clicks posted as events",
        "champion": champion,
        "challenger": challenger["version"],
        "challenger_size": challenger["size"],
        "seconds": round(seconds, 1),
        "requests": live["ok"],
        "users": status["srm"]["users"],
        "ctr": {arm: row["ctr"] for arm, row in status["arms"].items()},
        "lift": lift.get("estimate"),
        "lift_low": lift.get("low"),
        "lift_high": lift.get("high"),
        "interval_level": status["interval_level"],
        "p_value": lift.get("p_value"),
        "significant": b.get("significant"),
        "srm_p_value": status["srm"]["p_value"],
        "srm_mismatch": status["srm"]["mismatch"],
        "users_per_arm_needed": status["sample_size"].get("users_per_arm"),
        "expected_clicks_per_request": truth,
        "true_lift": true_lift,
        "exposures": status["exposures"],
        "p95_ms": live.get("p95_ms"),
    }
