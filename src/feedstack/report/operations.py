"""Sections 5-8 of the design report: Serve, Scale, Monitor, Cost."""

from __future__ import annotations

from typing import Any

from feedstack.plan.check import check_serving_cores
from feedstack.plan.quantity import Quantity
from feedstack.report import plots
from feedstack.report.context import Context
from feedstack.report.measured import HOW_TO_MEASURE, INPUT_KIND
from feedstack.report.product import latency_answer
from feedstack.report.section import Section, Table


def serve(ctx: Context) -> Section:
    s = Section("serve", "Serve")
    s.decision = (
        "`feedstack serve`: HTTP and gRPC over one request path (candidates, features, rank, "
        "filter, log), one worker process per core, each stage held to its share of the p95."
    )
    s.alternatives = "HTTP and gRPC at several rates (`feedstack bench serve` runs below)."
    budgets = ctx.spec.serve.budgets_ms(ctx.spec.latency)
    for stage, ms in budgets.items():
        s.add(
            f"stage_budget_ms.{stage}",
            Quantity.derived(ms, "ms", f"latency.p95_ms x serve.stage_shares.{stage}", {}),
        )
    runs = sorted(ctx.m.serve_runs, key=lambda r: str(r["measured_at"]))
    columns = ["record", "protocol", "rate", "rps", "p50_ms", "p95_ms", "p99_ms", "errors",
               "floor_rps"]  # fmt: skip
    rows = [[r["_path"], *(r["result"].get(c, "") for c in columns[1:])] for r in runs]
    if rows:
        s.tables.append(Table("feedstack bench serve runs (measured)", columns, rows))
    cdfs: dict[str, dict[float, float]] = {}
    for r in runs[-4:]:
        res = r["result"]
        pct = {q: res[f"p{int(q * 100)}_ms"] for q in (0.5, 0.95, 0.99)
               if isinstance(res.get(f"p{int(q * 100)}_ms"), int | float)}  # fmt: skip
        feed = res.get("feed") or {}
        if isinstance(feed.get("max_ms"), int | float):
            pct[1.0] = feed["max_ms"]
        if pct:
            cdfs[f"{res.get('protocol')} rate={res.get('rate')}"] = pct
    live = ctx.m.get("live")
    if live is not None:
        res = live["result"]
        pct = {q: res[k] for q, k in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms"))
               if isinstance(res.get(k), int | float)}  # fmt: skip
        if pct:
            cdfs["live (demo)"] = pct
    if cdfs:
        name = plots.latency_cdf(ctx.out, cdfs, ctx.spec.latency.p95_ms)
        s.plots.append((name, "Latency CDF from the recorded percentiles"))
    p95, _ = latency_answer(ctx)
    if p95 is not None:
        s.add("p95_ms", p95)
    else:
        s.need(HOW_TO_MEASURE["serve"])
    path = ctx.m.get("bench-request-path")
    if path is not None:
        for stage, ms in (path["result"].get("stage_p50_ms") or {}).items():
            if isinstance(ms, int | float):
                s.add(f"stage_p50_ms.{stage}", ctx.m.cite("bench-request-path",
                      f"stage_p50_ms.{stage}", float(ms), "ms"))  # fmt: skip
    s.add("rps_per_core_at_slo", ctx.inputs.rps_per_core_at_slo)
    return s


def scale(ctx: Context) -> Section:
    s = Section("scale", "Scale")
    s.decision = "Capacity from the measured throughput per core at the latency objective."
    s.alternatives = "Serving patterns priced on the same traffic and prices (table below)."
    plan = ctx.plan
    for name in ("average_qps", "peak_qps", "serving_cores_busy", "serving_cores",
                 "replicas_per_zone", "serving_cores_provisioned", "candidate_bytes_per_user",
                 "redis_candidates_gb", "redis_features_gb", "redis_gb", "events_per_day",
                 "storage_gb", "batch_core_h_per_month", "stream_cores"):  # fmt: skip
        s.add_json(name, plan["quantities"][name])
    rows = []
    for name, q in ctx.inputs.as_dict().items():
        run = "" if q.label == "measured" else HOW_TO_MEASURE.get(INPUT_KIND[name], "")
        rows.append([name, q.to_json()["value"], q.unit, q.label, q.source, run])
    s.tables.append(
        Table("Planner inputs", ["input", "value", "unit", "label", "source", "to measure"], rows)
    )
    for name, q in ctx.inputs.as_dict().items():
        if q.label == "measured":
            continue
        if INPUT_KIND[name] == "spec":
            s.missing.append(f"{name}: no benchmark records it yet; spec cost.fallback.{name}")
        elif _recorded(ctx, INPUT_KIND[name]):  # measured, but no record gives the input
            s.missing.append(
                f"{name}: the {INPUT_KIND[name]} records do not give it (for serve: no run "
                f"within the p95 objective without errors); cost.fallback.{name} assumed"
            )
        else:
            s.need(HOW_TO_MEASURE[INPUT_KIND[name]], f"{name} (cost.fallback.{name} assumed)")
    auto = plan["autoscale"]
    s.extra["autoscale"] = auto
    s.findings.append(
        f"Autoscaling ({auto['policy']['add_nodes_pct']:g} % nodes per "
        f"{auto['policy']['per_traffic_surge_pct']:g} % surge) over a day peaking at "
        f"{ctx.spec.traffic.peak_to_average:g}x the mean: fleet {auto['base_cores']:g} -> "
        f"{auto['peak_cores']:g} cores, mean utilization {auto['utilization_mean']:.0%} "
        f"(min {auto['utilization_min']:.0%}); {auto['core_h_per_day']:,.0f} core-h/day vs "
        f"{auto['proportional_core_h_per_day']:,.0f} if cores followed traffic exactly and "
        f"{auto['static_peak_core_h_per_day']:,.0f} if sized for the peak all day."
    )
    x2 = plan["traffic_x2"]
    s.extra["traffic_x2"] = x2
    s.findings.append(
        f"At 2x traffic ({x2['daily_active_users']:,} DAU): {x2['serving_cores']} serving cores, "
        f"{x2['redis_gb']:,.0f} GB Redis, ${x2['monthly_cost_usd']:,.0f}/month "
        f"({x2['cost_ratio']:.2f}x): cost grows linearly with users, because the largest lines "
        "(per-user cache, per-request cores) do."
    )
    pattern_cols = ["pattern", "monthly_cost_usd", "ranking_freshness_s", "feature_freshness_s",
                    "meets_freshness", "how"]  # fmt: skip
    s.tables.append(
        Table("Serving patterns (derived)", pattern_cols,
              [[p[c] for c in pattern_cols] for p in plan["patterns"]])
    )  # fmt: skip
    fresh = [p for p in plan["patterns"] if p["meets_freshness"]]
    if fresh:
        best = min(fresh, key=lambda p: p["monthly_cost_usd"])
        ours = next(p for p in plan["patterns"] if p["pattern"] == "hybrid")
        s.findings.append(
            f"Of the patterns that meet the freshness objective, {best['pattern']} is the "
            f"cheapest (${best['monthly_cost_usd']:,.0f}/month; the hybrid we run: "
            f"${ours['monthly_cost_usd']:,.0f}). Batch-offline is a batch period stale."
        )
    s.plots.append(
        (plots.autoscaled_day(ctx.out, auto["hourly_traffic"], auto["hourly_cores"]),
         "Daily traffic curve and the autoscaled fleet")
    )  # fmt: skip
    return s


def _recorded(ctx: Context, kind: str) -> bool:
    return ctx.m.get(kind) is not None or (kind == "serve" and bool(ctx.m.serve_runs))


# Settings echoed into a record (the simulated world, the policy) are not results.
_NOT_RESULTS = {"world", "policy", "config", "runs", "machine", "seed"}


def _scalars(d: dict[str, Any], prefix: str = "", limit: int = 16) -> list[tuple[str, float]]:
    """Up to ``limit`` numeric results of a record (booleans such as targets met count as 0/1)."""
    out: list[tuple[str, float]] = []
    for k, v in d.items():
        if len(out) >= limit:
            break
        if k in _NOT_RESULTS:
            continue
        if isinstance(v, dict):
            out.extend(_scalars(v, f"{prefix}{k}.", limit - len(out)))
        elif isinstance(v, int | float):
            out.append((f"{prefix}{k}", float(v)))
    return out


def monitor(ctx: Context) -> Section:
    s = Section("monitor", "Monitor")
    for key, unit in (("latency.p99_alert_ms", "ms"), ("latency.availability", "fraction"),
                      ("drift.psi_alert", "psi"), ("drift.kl_alert", "nats"),
                      ("monitor.ctr_drop_alert", "fraction"),
                      ("registry.max_error_rate", "fraction")):  # fmt: skip
        s.add(key, ctx.spec_q(key, unit))
    demo = rollout_story(ctx, s)
    for kind in ("drift", "bench-rollout", "bench-abtest"):
        rec = ctx.m.get(kind)
        if rec is None:
            # The demo's own canaries and A/B answer what the benchmarks would (repeated runs
            # of the same thing); ask for a benchmark only when neither was recorded.
            if not (demo and kind != "drift"):
                s.need(HOW_TO_MEASURE[kind])
            continue
        for path, value in _scalars(rec["result"]):
            s.add(f"{kind}.{path}", ctx.m.cite(kind, path, value, ""))
    check = cores_check(ctx)
    if check is not None:
        s.extra["cores_check"] = check
        s.findings.append(
            f"Planner check: predicted {check['predicted_cores']:g} serving cores for the live "
            f"load of {check['offered_rps']:g} requests/s, measured {check['measured_cores']:g} "
            f"(ratio {check['ratio']:.2f}, {'within' if check['within_tolerance'] else 'outside'}"
            " 25 %)."
        )
    else:
        s.need(HOW_TO_MEASURE["live"], "planner check (kind live: rps, server_cpu_s, elapsed_s)")
    return s


def rollout_story(ctx: Context, s: Section) -> bool:
    """The demo's canaries (rolled back, promoted), its simulated A/B and the live A/B through
    ``feedstack serve``, as findings and one table; False when none was recorded."""
    rec, live = ctx.m.get("rollout-demo"), ctx.m.get("abtest-live")
    rows: list[list[Any]] = []
    if rec is not None:
        r = rec["result"]
        bad, good, ab = (
            r.get("bad_canary") or {},
            r.get("better_canary") or {},
            r.get("abtest") or {},
        )
        if bad:
            reasons = "; ".join(str(x) for x in bad.get("reasons") or []) or "-"
            rows.append(["canary: shuffled ranker, 10 %", "simulated", bad.get("outcome"),
                         f"after {bad.get('minutes')} min, "
                         f"{bad.get('canary_requests', 0):,} canary requests ({reasons})"],
                        )  # fmt: skip
            if isinstance(bad.get("minutes"), int | float):
                minutes = float(bad["minutes"])
                q = ctx.m.cite("rollout-demo", "bad_canary.minutes", minutes, "min")
                s.add("rollout-demo.bad_canary.minutes", q)
        if good:
            lift = good.get("measured_ctr_lift")
            if isinstance(lift, dict):  # {"estimate", "low", "high", ...}
                lift = lift.get("estimate")
            steps = " > ".join(f"{st[2]:g}" for st in good.get("steps") or [] if len(st) > 2)
            rows.append(["canary: better ranker", "simulated", good.get("outcome"),
                         f"after {good.get('minutes')} min (shares {steps}); measured CTR lift "
                         f"{_pct(lift)}, true {_pct(good.get('true_ctr_lift'))}"])  # fmt: skip
        lift = ab.get("lift") or {}
        if isinstance(lift.get("estimate"), float):
            rows.append(["A/B: better ranker vs champion, 50/50", "simulated",
                         "covers the true lift" if ab.get("covers_true_lift") else "misses it",
                         f"lift {_pct(lift['estimate'])} [{_pct(lift.get('low'))}, "
                         f"{_pct(lift.get('high'))}], true {_pct(ab.get('true_lift'))}, "
                         f"SRM p = {ab.get('srm_p_value', float('nan')):.2g}"])  # fmt: skip
    if live is not None:
        r = live["result"]
        verdict = "significant" if r.get("significant") else "not significant"
        rows.append([f"A/B: challenger {r.get('challenger_size')} vs champion, 50/50",
                     "live, feedstack serve", verdict,
                     f"lift {_pct(r.get('lift'))} [{_pct(r.get('lift_low'))}, "
                     f"{_pct(r.get('lift_high'))}] over {r.get('requests', 0):,} requests, "
                     f"users {r.get('users')}, SRM p = {r.get('srm_p_value', float('nan')):.2g}; "
                     f"true lift {_pct(r.get('true_lift'))}"])  # fmt: skip
        for key in ("lift", "lift_low", "lift_high", "srm_p_value"):
            if isinstance(r.get(key), int | float):
                s.add(f"abtest-live.{key}", ctx.m.cite("abtest-live", key, float(r[key]), ""))
    if rows:
        src = ", ".join(
            ctx.m.paths[k].name for k in ("rollout-demo", "abtest-live") if k in ctx.m.paths
        )
        columns = ["test", "traffic", "outcome", "numbers"]
        s.tables.append(Table("The demo's canaries and A/B tests", columns, rows, src))
        s.decision = (
            "Every new ranker goes out as a canary on a stable-hash share of users, rolled back "
            "at once on a guardrail breach or a sequential CTR loss, promoted step by step; its "
            "launch lift is the A/B against the champion through the serving path."
        )
        s.alternatives = "Guardrails and the mSPRT in the spec's registry section; results below."
    return bool(rows)


def _pct(value: Any) -> str:
    return f"{value:+.1%}" if isinstance(value, int | float) else "-"


def cores_check(ctx: Context) -> dict[str, Any] | None:
    """The planner's serving cores for the live run's load vs the cores it used."""
    rec = ctx.m.get("live")
    if rec is None:
        return None
    full = rec["result"]
    # The planner prices feed requests; the full live run also posts the users' clicks back
    # (durable appends to the event log), so the check uses the feeds-only phase when the
    # record has one and reports the full run's cores beside it.
    r = full.get("feeds_only") if isinstance(full.get("feeds_only"), dict) else full
    rps, cpu, wall = r.get("rps"), r.get("server_cpu_s"), r.get("elapsed_s")
    if not all(isinstance(v, int | float) and v > 0 for v in (rps, cpu, wall)):
        return None
    per_core = ctx.inputs.rps_per_core_at_slo
    got = check_serving_cores(float(rps), per_core.value, float(cpu), float(wall))
    out = {**got.to_json(), "rps_per_core_source": per_core.to_json(),
           "measured_load": "feeds only" if r is not full else "feeds + event posts",
           "measured_source": f"{ctx.m.paths['live'].name}: `{rec['command']}`"}  # fmt: skip
    if r is not full and isinstance(full.get("server_cores"), int | float):
        out["with_event_posts_cores"] = full["server_cores"]
    return out


def cost(ctx: Context) -> Section:
    s = Section("cost", "Cost")
    s.decision = "The monthly cost per line from the plan, against the budget."
    plan = ctx.plan
    for name in ("cost_serving", "cost_stream", "cost_batch", "cost_redis_candidates",
                 "cost_redis_features", "cost_storage", "monthly_cost"):  # fmt: skip
        s.add_json(name, plan["quantities"][name])
    s.add("budget", ctx.spec_q("budget.compute_usd_per_month", "$/month"))
    s.extra.update({k: plan[k] for k in ("monthly_cost_usd", "budget_usd", "within_budget",
                                         "bottleneck", "fits_after_cuts")})  # fmt: skip
    s.tables.append(
        Table("Cuts (each alone, derived)", ["cut", "saves_usd", "what"],
              [[c["cut"], c["saves_usd"], c["what"]] for c in plan["cuts"]])
    )  # fmt: skip
    if plan["plan_to_fit"]:
        s.tables.append(
            Table("Cuts applied until within budget (marginal savings)",
                  ["cut", "saves_usd", "monthly_cost_usd"],
                  [[c["cut"], c["saves_usd"], c["monthly_cost_usd"]] for c in plan["plan_to_fit"]])
        )  # fmt: skip
    s.tables.append(
        Table("Price table (assumed)", ["entry", "value", "unit", "source"],
              [[p["entry"], p["value"], p["unit"], p["source"]] for p in plan["prices"]])
    )  # fmt: skip
    verdict = "within" if plan["within_budget"] else "over"
    s.findings.append(
        f"${plan['monthly_cost_usd']:,.0f} a month, {verdict} the "
        f"${plan['budget_usd']:,.0f} budget; the largest line is {plan['bottleneck']}."
    )
    if not plan["within_budget"]:
        names = ", ".join(c["cut"] for c in plan["plan_to_fit"])
        s.findings.append(f"{'Fits' if plan['fits_after_cuts'] else 'Still over'} after: {names}.")
    s.plots.append(
        (plots.cost_breakdown(ctx.out, plan["cost_lines_usd"], plan["budget_usd"]),
         "Monthly cost per line against the budget")
    )  # fmt: skip
    return s
