"""``feedstack monitor``: drift, SLO burn rates, alert rules and dashboard, KPIs, a scenario.

feedstack monitor drift  [--reference R.parquet --live L.parquet] [--retrain [--apply]]
feedstack monitor slo    --url http://host:8080/metrics [--samples N --interval S]
                         | --prometheus http://prometheus:9090
feedstack monitor rules  --out DIR            (rules.yml, rules_test.yml, dashboard.json)
feedstack monitor kpi    [--events GLOB] [--arms v1=champion,...] [--hours H]
feedstack monitor scenario                    (the "detected within 5 minutes" benchmark)
feedstack monitor up / down                   (a local Prometheus: cli/prometheus_cmd.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from feedstack.cli import prometheus_cmd
from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
    record_measurement,
)

app = typer.Typer(
    help="Monitoring: drift, SLO burn rates, alert rules and dashboard, KPIs.",
    no_args_is_help=True,
)


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        console.print_json(data=result)


def _offline_glob(root: Path) -> str:
    from feedstack.core.spec import load_spec
    from feedstack.storage.offline import open_offline_store

    store = open_offline_store(load_spec(root).backends.offline_store, root)
    return str(store.events_dir / "*" / "*.parquet")


def _parquet_columns(path: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from feedstack.core.errors import InputError

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"cannot read Parquet {path}: {exc}") from None
    cols = {}
    for name in table.column_names:
        typ = table.schema.field(name).type
        if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
            cols[name] = table.column(name).to_numpy(zero_copy_only=False)
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            cols[name] = table.column(name).fill_null("").to_numpy(zero_copy_only=False)
    return cols


@app.command("drift")
def drift(
    project: Path | None = ProjectOption,
    reference: Path | None = typer.Option(
        None, "--reference", help="Parquet of the reference window (e.g. the training table)."
    ),
    live: Path | None = typer.Option(None, "--live", help="Parquet of the live window."),
    live_minutes: float | None = typer.Option(
        None,
        "--live-minutes",
        help="Live window on the log (default: monitor.drift_window_minutes).",
    ),
    reference_hours: float = typer.Option(
        24.0, "--reference-hours", help="Reference window on the log, just before the live one."
    ),
    retrain: bool = typer.Option(False, "--retrain", help="Apply the retrain policy."),
    apply: bool = typer.Option(
        False, "--apply", help="With --retrain: really run `feedstack train` (default: dry run)."
    ),
    metrics_file: Path | None = typer.Option(
        None,
        "--metrics-file",
        help="Also write the drift gauges there (node_exporter textfile collector, *.prom).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Compare a live window with the reference, per feature: KS, PSI, KL and a verdict.

    Run every minute with --metrics-file in node_exporter's textfile folder, the gauges feed
    the generated FeedstackFeatureDrift alert.

    With --reference and --live, every column both Parquet files share is compared (numbers:
    KS + binned PSI/KL; strings: categorical PSI/KL). Without them, the project's log is read:
    the live window is its last --live-minutes, the reference the --reference-hours before.
    """
    import time

    from feedstack.core.errors import InputError
    from feedstack.core.spec import load_spec
    from feedstack.monitor.drift import Kind, drift_report

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root)
        kinds: dict[str, Kind] = {}
        if (reference is None) != (live is None):
            raise InputError("--reference and --live go together (or neither: the project log)")
        if reference is not None and live is not None:
            ref_values, live_values = _parquet_columns(reference), _parquet_columns(live)
            windows: dict[str, Any] = {"reference": str(reference), "live": str(live)}
        else:
            from feedstack.monitor.event_features import KINDS, read_event_features

            feats = read_event_features(_offline_glob(root))
            minutes = live_minutes or spec.monitor.drift_window_minutes
            if minutes <= 0 or reference_hours <= 0:
                raise InputError("--live-minutes and --reference-hours must be > 0")
            end = feats.newest_us + 1
            cut = end - int(minutes * 60e6)
            ref_values = feats.window(cut - int(reference_hours * 3600e6), cut)
            live_values = feats.window(cut, end)
            kinds = {
                k: "categorical" if v == "categorical" else "numeric" for k, v in KINDS.items()
            }
            windows = {"live_minutes": minutes, "reference_hours": reference_hours}
        report = drift_report(ref_values, live_values, spec.drift, spec.monitor, kinds)
        result: dict[str, Any] = {
            "windows": windows,
            "thresholds": spec.drift.model_dump(),
            **report.to_json(),
        }
        if metrics_file is not None:
            from prometheus_client import write_to_textfile

            from feedstack.monitor.metrics import DriftMetrics

            gauges = DriftMetrics()
            gauges.publish(report.features)
            try:
                write_to_textfile(str(metrics_file), gauges.registry)  # temp file + rename
            except OSError as exc:
                raise InputError(f"--metrics-file {metrics_file}: {exc}") from None
            result["metrics_file"] = str(metrics_file)
        if retrain:
            result["retrain"] = _retrain(report, root, spec, dry_run=not apply, now_s=time.time())
    _show(result, as_json)


def _retrain(report: Any, root: Path, spec: Any, *, dry_run: bool, now_s: float) -> Any:
    from datetime import datetime

    from feedstack.monitor.retrain import apply_retrain, retrain_policy
    from feedstack.storage import measurements

    last = measurements.latest(root / "measurements", "train")
    last_s = datetime.fromisoformat(last["measured_at"]).timestamp() if last else None
    decision = retrain_policy(report, spec.monitor, now_s=now_s, last_trained_s=last_s)

    def run() -> Any:
        from feedstack.train.project import train_project

        result = train_project(root)
        rec = measurements.record("train", result)
        measurements.save(root / "measurements", rec)
        return {"model_dir": str(result.get("model_dir"))}

    outcome = apply_retrain(decision, run, dry_run=dry_run)
    out = outcome.to_json()
    if dry_run and decision.retrain:
        out["would_run"] = f"feedstack train --project {root}"
    return out


@app.command("slo")
def slo(
    project: Path | None = ProjectOption,
    url: str | None = typer.Option(None, "--url", help="A server's /metrics URL to scrape."),
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="A Prometheus server URL (windows from its history)."
    ),
    samples: int = typer.Option(2, "--samples", min=1, help="Scrapes of --url."),
    interval: float = typer.Option(10.0, "--interval", min=0.0, help="Seconds between scrapes."),
    as_json: bool = JsonOption,
) -> None:
    """Error budget remaining and burn rates (1h/5m at 14.4x, 6h/30m at 6x, 3d/6h at 1x).

    Scraping --url gives a short history (samples x interval): windows it does not cover are
    computed over what there is and marked complete=false; with one sample, the counters since
    the server started are used for every window. --prometheus gives full windows.
    """
    from feedstack.core.errors import InputError
    from feedstack.core.spec import load_spec
    from feedstack.monitor.scrape import (
        fetch_text,
        prometheus_query,
        prometheus_report,
        scrape_history,
        scraped_reports,
    )
    from feedstack.monitor.slo import spec_slos

    with cli_errors():
        spec = load_spec(project_dir(project))
        if (url is None) == (prometheus is None):
            raise InputError("give exactly one of --url (a /metrics URL) or --prometheus")
        if url is not None:
            target = url
            history = scrape_history(
                lambda: fetch_text(target), spec, samples=samples, interval_s=interval
            )
            reports = scraped_reports(history, spec)
            source: dict[str, Any] = {"url": url, "samples": samples, "interval_s": interval}
        else:
            assert prometheus is not None
            base = prometheus
            reports = [
                prometheus_report(s, spec, lambda expr: prometheus_query(base, expr))
                for s in spec_slos(spec.latency, spec.monitor)
            ]
            source = {"prometheus": prometheus}
        result = {"source": source, "slos": [r.to_json() for r in reports]}
    _show(result, as_json)


@app.command("rules")
def rules(
    out: Path = typer.Option(
        ..., "--out", help="Folder for rules.yml, rules_test.yml, dashboard.json."
    ),
    project: Path | None = ProjectOption,
    check: bool = typer.Option(
        True, "--check/--no-check", help="Run promtool check rules and test rules when installed."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Write alert and recording rules, their promtool tests and a Grafana dashboard.

    Every threshold is the spec's; promtool checks the rules and runs the tests when installed.
    """
    from feedstack.core.errors import FeedstackError
    from feedstack.core.spec import load_spec
    from feedstack.monitor.bundle import promtool_check, promtool_path, write_monitoring_files

    with cli_errors():
        spec = load_spec(project_dir(project))
        paths = write_monitoring_files(spec, out)
        result: dict[str, Any] = {"files": {k: str(v) for k, v in paths.items()}}
        if check and promtool_path() is not None:
            result["promtool"] = promtool_check(out)
            if not all(step["ok"] for step in result["promtool"].values()):
                _show(result, as_json)
                raise FeedstackError(f"promtool rejected the generated files in {out}")
        elif check:
            result["promtool"] = "not installed (apt-get install prometheus); not checked"
    _show(result, as_json)


def _arms(text: str | None, root: Path) -> dict[str, str]:
    from feedstack.core.errors import InputError

    if text:
        out = {}
        for part in text.split(","):
            version, sep, arm = part.partition("=")
            if not sep or not version.strip() or not arm.strip():
                raise InputError(f"--arms: {part!r} is not VERSION=ARM")
            out[version.strip()] = arm.strip()
        return out
    from feedstack.registry.state import load_rollout

    state = load_rollout(root)
    if state is None:
        return {}
    arms = {state.champion: "champion"}
    if state.challenger:
        arms[state.challenger] = "challenger"
    return arms


@app.command("kpi")
def kpi(
    project: Path | None = ProjectOption,
    events: str | None = typer.Option(
        None, "--events", help="Parquet glob of logged events (default: the offline copy)."
    ),
    arms: str | None = typer.Option(
        None, "--arms", help="VERSION=ARM,... (default: champion/challenger of the rollout)."
    ),
    hours: float | None = typer.Option(
        None, "--hours", help="Only the last H hours before the newest impression."
    ),
    as_json: bool = JsonOption,
) -> None:
    """CTR and dwell per model version and per arm, with 95 % confidence intervals."""
    from feedstack.core.errors import InputError
    from feedstack.monitor.kpi import kpi_report

    with cli_errors():
        root = project_dir(project)
        glob = events or _offline_glob(root)
        start_s = None
        if hours is not None:
            if hours <= 0:
                raise InputError(f"--hours must be > 0, got {hours}")
            from feedstack.monitor.event_features import read_event_features

            start_s = read_event_features(glob).newest_us / 1e6 - hours * 3600
        report = kpi_report(glob, arms=_arms(arms, root), start_s=start_s)
        result = {"events": glob, **report.to_json()}
    _show(result, as_json)


@app.command("scenario")
def scenario(
    project: Path | None = ProjectOption,
    seed: int = typer.Option(0, "--seed", help="World seed."),
    users: int = typer.Option(60_000, "--users", min=1_000, help="Users in the simulated world."),
    as_json: bool = JsonOption,
) -> None:
    """Inject drift and a slowdown after 1 h of steady simulated traffic; time the detection.

    Reports when the topic surge, the dwell shift and the slowdown were each detected (simulated
    minutes after injection) and the false alarms of the steady hour; recorded as "drift".
    """
    from feedstack.core.spec import load_spec
    from feedstack.monitor.scenario import ScenarioConfig, run_drift_scenario

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root)
        result = run_drift_scenario(spec, ScenarioConfig(seed=seed, users=users))
        record_measurement("drift", result.summary(), root, as_json)


@app.command("overhead")
def overhead(
    project: Path | None = ProjectOption,
    rate: float = typer.Option(100.0, "--rate", help="Open-loop feed requests/s."),
    duration: float = typer.Option(10.0, "--duration", help="Measured seconds per server."),
    rounds: int = typer.Option(2, "--rounds", help="On/off pairs (order alternates)."),
    protocol: str = typer.Option("http", "--protocol", help="http or grpc."),
    as_json: bool = JsonOption,
) -> None:
    """CPU per feed request of `feedstack serve` with metrics on vs --no-metrics, in one run.

    Needs a trained project (the pipeline service). Recorded as "metrics-overhead".
    """
    from feedstack.bench.metrics_overhead import run_metrics_overhead
    from feedstack.core.errors import InputError

    with cli_errors():
        root = project_dir(project)
        if protocol not in ("http", "grpc"):
            raise InputError(f"--protocol must be http or grpc, got {protocol!r}")
        result = run_metrics_overhead(
            root, rate=rate, duration_s=duration, rounds=rounds, protocol=protocol
        )
        record_measurement("metrics-overhead", result, root, as_json)


# A local Prometheus over the project's servers (cli/prometheus_cmd.py).
app.command("up")(prometheus_cmd.up)
app.command("down")(prometheus_cmd.down)
