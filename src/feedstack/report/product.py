"""Sections 1-4 of the design report: Problem, Metrics, Data, Model."""

from __future__ import annotations

from typing import Any

from feedstack.plan.quantity import Quantity
from feedstack.report import diagram, plots
from feedstack.report.context import Context
from feedstack.report.measured import HOW_TO_MEASURE
from feedstack.report.section import Section, Table


def latency_answer(ctx: Context) -> tuple[Quantity | None, dict[str, Any] | None]:
    """The p95 that answers "does it meet the latency objective": the demo's live run when
    recorded, else the newest ``feedstack bench serve`` run."""
    live = ctx.measured("live", "p95_ms", "ms")
    if live is not None:
        return live, ctx.m.get("live")
    runs = sorted(ctx.m.serve_runs, key=lambda r: str(r["measured_at"]))
    if not runs or "p95_ms" not in runs[-1]["result"]:
        return None, None
    rec = runs[-1]
    q = Quantity.measured(
        float(rec["result"]["p95_ms"]), "ms", f"{rec['_path']} (p95_ms)", rec["command"],
        rec["measured_at"],
    )  # fmt: skip
    return q, rec


def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured yet"
    return "meets" if value <= target else "does not meet"


def ctr_lift_answer(ctx: Context) -> tuple[Quantity | None, str]:
    """The CTR lift of the challenger over the champion: the live A/B through ``feedstack serve``
    when recorded (with its interval), else the demo's simulated A/B; and a sentence for it."""
    rec = ctx.m.get("abtest-live")
    if rec is not None and isinstance(rec["result"].get("lift"), int | float):
        r = rec["result"]
        q = ctx.m.cite("abtest-live", "lift", float(r["lift"]), "fraction")
        level = float(r.get("interval_level") or 0.95)
        sig = "significant" if r.get("significant") else "not significant"
        truth = r.get("true_lift")
        true_text = f"; the world's true lift {truth:+.1%}" if isinstance(truth, float) else ""
        need = r.get("users_per_arm_needed")
        if not r.get("significant") and isinstance(need, int | float):
            true_text += f"; ~{need:,.0f} users per arm would detect the target lift"
        return q, (
            f"{q.value:+.1%} [{r['lift_low']:+.1%}, {r['lift_high']:+.1%}] ({level:.0%} interval, "
            f"{sig}; SRM p = {r['srm_p_value']:.2g}) for challenger {r['challenger_size']} vs "
            f"the champion, live A/B through feedstack serve over {r['requests']:,} requests"
            f"{true_text}"
        )
    rec = ctx.m.get("rollout-demo")
    ab = rec["result"].get("abtest") if rec is not None else None
    if isinstance(ab, dict) and isinstance((ab.get("lift") or {}).get("estimate"), float):
        lift = ab["lift"]
        q = ctx.m.cite("rollout-demo", "abtest.lift.estimate", lift["estimate"], "fraction")
        return q, (
            f"{q.value:+.1%} [{lift['low']:+.1%}, {lift['high']:+.1%}] (simulated A/B of the "
            "better ranker vs the champion; no live A/B recorded)"
        )
    return None, "not measured yet"


def _lift_verdict(ctx: Context, lift: Quantity | None, target: float) -> str:
    """meets (the interval clears the target), does not meet (it lies below), else
    inconclusive (more users needed): a point estimate alone decides nothing."""
    if lift is None:
        return "not measured yet"
    r = (ctx.m.get("abtest-live") or {}).get("result", {})
    low, high = r.get("lift_low"), r.get("lift_high")
    if not isinstance(low, float) or not isinstance(high, float):
        return "meets" if lift.value >= target else "does not meet"
    if low >= target:
        return "meets"
    return "does not meet" if high < target else "inconclusive"


def _design(ctx: Context, p95: Quantity | None, lag: float | None) -> str:
    notes = {}
    if p95 is not None:
        notes["serve"] = f"p95 {p95.value:.3g} ms"
    if lag is not None:
        notes["worker"] = f"lag p99 {lag:.3g} s"
    notes["plan"] = f"${ctx.plan['monthly_cost_usd']:,.0f}/month"
    lift, _ = ctr_lift_answer(ctx)
    if lift is not None:
        notes["abtest"] = f"CTR lift {lift.value:+.1%}"
    sel = (ctx.m.get("train") or {}).get("result", {}).get("selected")
    if sel:
        notes["train"] = f"ranker {sel}"
    return diagram.write_design(ctx.out, notes)


def problem(ctx: Context) -> Section:
    s = Section("problem", "Problem and answers")
    spec = ctx.spec
    s.findings.append(
        f"A personalized news feed for {spec.traffic.daily_active_users:,} daily users "
        f"({spec.name}): p95 <= {spec.latency.p95_ms:g} ms, features fresh within "
        f"{spec.freshness.feature_max_lag_s:g} s, <= ${spec.budget.compute_usd_per_month:,.0f} "
        f"a month, CTR lift >= {spec.kpi.ctr_lift_min:.0%}."
    )
    for key, unit in (
        ("traffic.daily_active_users", "users"),
        ("traffic.requests_per_user_per_day", "requests/user/day"),
        ("traffic.peak_to_average", "ratio"),
        ("traffic.zones", "zones"),
        ("latency.p95_ms", "ms"),
        ("freshness.feature_max_lag_s", "s"),
        ("budget.compute_usd_per_month", "$/month"),
        ("kpi.ctr_lift_min", "fraction"),
        ("kpi.value_per_click_usd", "$/click"),
    ):
        s.add(key, ctx.spec_q(key, unit))
    p95, _ = latency_answer(ctx)
    lag = ctx.inputs.feature_lag_p99_s
    lag_value = lag.value if lag.label == "measured" else None
    plan = ctx.plan
    answers = {
        "p95_ms": {
            "target": spec.latency.p95_ms,
            "value": p95.to_json() if p95 else None,
            "verdict": _verdict(p95.value if p95 else None, spec.latency.p95_ms),
        },
        "freshness_s": {
            "target": spec.freshness.feature_max_lag_s,
            "value": lag.to_json(),
            "verdict": _verdict(lag_value, spec.freshness.feature_max_lag_s),
        },
        "monthly_cost_usd": {
            "target": plan["budget_usd"],
            "value": plan["quantities"]["monthly_cost"],
            "verdict": "meets" if plan["within_budget"] else "does not meet",
            "fits_after_cuts": plan["fits_after_cuts"],
        },
        "bottleneck": plan["bottleneck"],
    }
    lift, lift_text = ctr_lift_answer(ctx)
    target = spec.kpi.ctr_lift_min
    answers["ctr_lift"] = {
        "target": target,
        "value": lift.to_json() if lift else None,
        "verdict": _lift_verdict(ctx, lift, target),
        "vs": "champion",
    }
    s.extra["answers"] = answers
    if p95 is None:
        s.need(HOW_TO_MEASURE["serve"])
    if lag_value is None:
        s.need(HOW_TO_MEASURE["bench-freshness"])
    p95_text = f" (measured {p95.value:g} ms)" if p95 else ""
    lag_text = f" (p99 {lag_value:g} s)" if lag_value is not None else ""
    over = (
        ""
        if plan["within_budget"]
        else (f"; {'fits' if plan['fits_after_cuts'] else 'does not fit'} after the cuts in Cost")
    )
    s.findings += [
        f"Latency p95 <= {spec.latency.p95_ms:g} ms: {answers['p95_ms']['verdict']}{p95_text}.",
        f"Freshness <= {spec.freshness.feature_max_lag_s:g} s: "
        f"{answers['freshness_s']['verdict']}{lag_text}.",
        f"Cost <= ${plan['budget_usd']:,.0f}/month: {answers['monthly_cost_usd']['verdict']} "
        f"(${plan['monthly_cost_usd']:,.0f}{over}).",
        f"CTR lift vs the champion >= {target:.0%}: {answers['ctr_lift']['verdict']} "
        f"({lift_text}).",
        f"Bottleneck: {plan['bottleneck']} ({plan['bottleneck_share']:.0%} of the cost).",
    ]
    if lift is None:
        s.need(HOW_TO_MEASURE["abtest-live"], "CTR lift vs the champion")
    rows = [
        ["latency p95", f"<= {spec.latency.p95_ms:g} ms",
         f"{p95.value:.3g} ms" if p95 else "not measured", answers["p95_ms"]["verdict"]],
        ["feature freshness (p99 lag)", f"<= {spec.freshness.feature_max_lag_s:g} s",
         f"{lag_value:.3g} s" if lag_value is not None else "not measured",
         answers["freshness_s"]["verdict"]],
        ["monthly cost", f"<= ${plan['budget_usd']:,.0f}", f"${plan['monthly_cost_usd']:,.0f}",
         answers["monthly_cost_usd"]["verdict"]],
        ["CTR lift vs the champion", f">= {target:.0%}",
         f"{lift.value:+.1%}" if lift else "not measured", answers["ctr_lift"]["verdict"]],
        ["bottleneck", "", f"{plan['bottleneck']} ({plan['bottleneck_share']:.0%} of the cost)",
         ""],
    ]  # fmt: skip
    s.tables.append(Table("The reference questions", ["question", "target", "answer", "verdict"],
                          rows))  # fmt: skip
    s.plots.append((_design(ctx, p95, lag_value), "The design, with this run's measured numbers"))
    s.decision = (
        "A hybrid design: candidates precomputed in a batch job, ranked online per request with "
        "fresh features from a stream worker; rollouts by canary and A/B on a stable hash."
    )
    s.alternatives = (
        "Serving patterns priced in Scale; rankers in Model; batch engines in Data; "
        "the rollout and A/B results in Monitor."
    )
    return s


def _expected_clicks(ctx: Context) -> tuple[float, float, str, str] | None:
    rec = ctx.m.get("train")
    if rec is None:
        return None
    r = rec["result"]
    ec = r.get("evaluation", {}).get("expected_clicks")
    if not isinstance(ec, dict):
        return None
    selected = r.get("selected")
    base = "logged" if "logged" in ec else "blend"
    if selected not in ec or base not in ec:
        return None
    return float(ec[selected]), float(ec[base]), str(selected), base


def metrics(ctx: Context) -> Section:
    s = Section("metrics", "Metrics")
    s.decision = (
        "Offline: NDCG@10 and recall@K on held-out logged clicks, and expected clicks on the "
        "simulated world's ground truth; online: CTR per arm of an A/B through the server."
    )
    train = ctx.m.get("train")
    if train is not None:
        for path, unit in (
            ("lift.blend_ndcg@10", "ndcg"),
            ("lift.ranker_ndcg@10", "ndcg"),
            ("lift.relative", "fraction"),
            ("evaluation.candidate_recall", "recall"),
        ):
            q = ctx.measured("train", path, unit)
            if q is not None:
                s.add(f"train.{path}", q)
    else:
        s.need(HOW_TO_MEASURE["train"])
    clicks = _expected_clicks(ctx)
    if clicks is not None and train is not None:
        mine, base, selected, base_name = clicks
        src = ctx.m.paths["train"].name
        sel_q = ctx.m.cite(
            "train", f"evaluation.expected_clicks.{selected}", mine, "clicks/request"
        )
        base_q = ctx.m.cite(
            "train", f"evaluation.expected_clicks.{base_name}", base, "clicks/request"
        )
        lift = Quantity.derived(
            mine / base - 1.0 if base > 0 else 0.0, "fraction",
            f"expected_clicks[{selected}] / expected_clicks[{base_name}] - 1 ({src})",
            {"selected": sel_q, "baseline": base_q},
        )  # fmt: skip
        rpd = ctx.plan["quantities"]["average_qps"]["value"] * 86_400.0
        req = Quantity.derived(rpd, "requests/day", "DAU x requests_per_user_per_day", {})
        per_day = Quantity.derived(
            rpd * (mine - base), "clicks/day",
            "requests/day x (expected clicks/request of the ranker - of the baseline)",
            {"requests_per_day": req, "selected": sel_q, "baseline": base_q},
        )  # fmt: skip
        value = ctx.spec_q("kpi.value_per_click_usd", "$/click")
        month = ctx.spec_q("cost.hours_per_month", "h/month")
        usd = Quantity.derived(
            per_day.value * month.value / 24.0 * value.value, "$/month",
            "clicks/day x hours_per_month / 24 x value_per_click_usd",
            {"clicks_per_day": per_day, "value_per_click_usd": value},
        )  # fmt: skip
        s.add("ctr_lift", lift)
        s.add("extra_clicks_per_day", per_day)
        s.add("extra_value_usd_per_month", usd)
        target = ctx.spec.kpi.ctr_lift_min
        s.findings.append(
            f"Offline, against the logging policy (not the launch number: that is the A/B "
            f"against the champion, first page): expected-click lift on the simulated world's "
            f"ground truth {lift.value:+.1%} "
            f"({'meets' if lift.value >= target else 'below'} the {target:.0%} target): "
            f"{per_day.value:,.0f} more clicks a day at the spec's traffic, "
            f"${usd.value:,.0f} a month at ${value.value:g} a click."
        )
    else:
        s.need(HOW_TO_MEASURE["train"], "CTR lift (train with --world: ground-truth clicks)")
    series = _recall_series(ctx, s)
    if series:
        s.plots.append((plots.recall_curves(ctx.out, series), "Recall@K per stage"))
    else:
        s.need(HOW_TO_MEASURE["evaluate"])
    return s


def _recall_series(ctx: Context, s: Section) -> dict[str, dict[int, float]]:
    """Points (K, recall@K) from the evaluation records: candidates, first stage, two-stage."""
    series: dict[str, dict[int, float]] = {}
    for kind in ("evaluate", "bench-gowalla"):
        rec = ctx.m.get(kind)
        if rec is None:
            continue
        r = rec["result"]
        for key, value in r.items():
            if key.startswith("recall@") and isinstance(value, int | float):
                series.setdefault(f"{kind}: two-stage", {})[int(key[7:])] = float(value)
                s.add(f"{kind}.{key}", ctx.m.cite(kind, key, float(value), "recall"))
            if key.startswith("candidate_recall@") and isinstance(value, int | float):
                series.setdefault(f"{kind}: candidates", {})[int(key[17:])] = float(value)
                s.add(f"{kind}.{key}", ctx.m.cite(kind, key, float(value), "recall"))
        for key, value in (r.get("first_stage") or {}).items():
            if key.startswith("recall@") and isinstance(value, int | float):
                series.setdefault(f"{kind}: first stage", {})[int(key[7:])] = float(value)
    train = ctx.m.get("train")
    if train is not None:
        ev = train["result"].get("evaluation", {})
        for name, row in ev.get("models", {}).items():
            for key, value in row.items():
                if key.startswith("recall@") and isinstance(value, int | float):
                    series.setdefault(f"train: {name}", {})[int(key[7:])] = float(value)
        # The whole candidate list is the blend's recall at K = its length.
        k, recall = ev.get("candidates_per_request"), ev.get("candidate_recall")
        if isinstance(k, int | float) and k >= 1 and isinstance(recall, int | float):
            series.setdefault("train: blend", {})[round(k)] = float(recall)
    return series


def _engines(ctx: Context, s: Section) -> None:
    """The batch engines measured side by side (``feedstack bench scale``), as a table."""
    rec = ctx.m.get("bench-scale-batch")
    runs = (rec or {}).get("result", {}).get("runs") or {}
    rows = []
    for engine, done in runs.items():
        for r in done if isinstance(done, list) else []:
            rows.append([engine, r.get("world_users"), r.get("ok"), r.get("backfill_s"),
                         r.get("candidates_s"), r.get("candidate_ms_per_user_core"),
                         r.get("peak_rss_gb")])  # fmt: skip
    if rows and rec is not None:
        cols = ["engine", "world users", "ok", "backfill_s", "candidates_s",
                "candidate ms/user/core", "peak_rss_gb"]  # fmt: skip
        s.tables.append(Table("Batch engines (measured)", cols, rows, ctx.m.paths[
            "bench-scale-batch"].name))  # fmt: skip
        s.alternatives = f"Batch engines {', '.join(runs)} on growing worlds (table below)."
    else:
        s.alternatives = "Batch engines: not measured yet (run: feedstack bench scale --json)."


def data(ctx: Context) -> Section:
    s = Section("data", "Data")
    s.decision = (
        "One versioned event schema into a durable, idempotent log; features defined once for "
        f"the stream worker and the backfill; batch jobs on the engine `{ctx.spec.engine}`."
    )
    _engines(ctx, s)
    for kind, paths in (
        ("bench-world", (("events_per_s", "events/s"), ("events_per_user_day", "events/user/day"),
                         ("bytes_per_event", "bytes"))),
        ("bench-ingest", (("embedded.events_per_s", "events/s"),
                          ("redis.events_per_s", "events/s"))),
        ("bench-worker", (("worker.events_per_s", "events/s"), ("memory.state_mb", "MB"))),
        ("train", (("data.users", "users"), ("data.articles", "articles"),
                   ("data.impressions", "impressions"), ("data.clicks", "clicks"))),
    ):  # fmt: skip
        if ctx.m.get(kind) is None:
            s.need(HOW_TO_MEASURE[kind])
            continue
        for path, unit in paths:
            q = ctx.measured(kind, path, unit)
            if q is not None:
                s.add(f"{kind}.{path}", q)
    lags: dict[str, dict[float, float]] = {}
    for rec in ctx.m.freshness:
        r = rec["result"]
        backend = str(r.get("backend"))
        for key in ("lag_p50_ms", "lag_p99_ms", "events_per_s"):
            if isinstance(r.get(key), int | float):
                s.add(
                    f"bench-freshness.{backend}.{key}",
                    Quantity.measured(float(r[key]), "ms" if "lag" in key else "events/s",
                                      f"bench-freshness {backend} ({key})", rec["command"],
                                      rec["measured_at"]),
                )  # fmt: skip
        quantiles = _lag_quantiles(r)
        if quantiles:
            lags[backend] = quantiles
    if lags:
        name = plots.freshness_cdf(ctx.out, lags, ctx.spec.freshness.feature_max_lag_s)
        s.plots.append((name, "Event -> online-store lag (bench-freshness)"))
    else:
        s.need(HOW_TO_MEASURE["bench-freshness"])
    return s


def _lag_quantiles(result: dict[str, Any]) -> dict[float, float]:
    """{quantile: lag ms} of a bench-freshness record: its ``lag_quantiles_ms`` (a CDF in ~10
    points), else the p50/p95/p99/max it always has."""
    q = result.get("lag_quantiles_ms")
    if isinstance(q, dict) and q:
        return {float(k): float(v) for k, v in q.items()}
    points = {0.5: "lag_p50_ms", 0.95: "lag_p95_ms", 0.99: "lag_p99_ms", 1.0: "lag_max_ms"}
    return {
        k: float(result[v]) for k, v in points.items() if isinstance(result.get(v), int | float)
    }


def model(ctx: Context) -> Section:
    s = Section("model", "Model")
    rec = ctx.m.get("train")
    if rec is None:
        s.need(HOW_TO_MEASURE["train"])
        return s
    r = rec["result"]
    rows = r.get("selection", [])
    columns = ["model", "trees", "leaves", "ndcg@10", "fit_s", "p50_ms", "p99_ms", "fits_budget"]
    table_rows = [[row.get(c, "") for c in columns] for row in rows]
    source = f"{ctx.m.paths['train'].name}: `{rec['command']}` at {rec['measured_at']}"
    s.tables.append(Table("Model selection (measured)", columns, table_rows, source))
    if table_rows:
        name = plots.table_figure(
            ctx.out, f"Ranker selection, budget p99 <= {r.get('budget_ms', '?')} ms", columns,
            table_rows, "model_selection.png",
        )  # fmt: skip
        s.plots.append((name, "The model-selection table"))
    q = ctx.measured("train", "budget_ms", "ms")
    if q is not None:
        s.add("ranker_budget_ms", q)
    s.decision = (
        f"Ranker {r.get('selected')}: the most accurate LambdaRank size whose p99 fits the "
        f"ranking budget of {r.get('budget_ms', '?')} ms."
    )
    s.alternatives = (
        f"{len(rows)} rankers (sizes, and the smallest without propensity weights) on the same "
        "held-out window: the model-selection table."
    )
    return s
