"""``feedstack serve``: the HTTP and gRPC APIs in one process, until SIGTERM."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    project_dir,
    record_measurement,
)
from feedstack.core.errors import InputError

SERVICES = ("pipeline", "synthetic")


def _build(kind: str, project: Path, spec: Any, metrics: Any, cpu_ms: float) -> Any:
    if kind == "synthetic":
        from feedstack.serve.synthetic import SyntheticFeedService

        return SyntheticFeedService(cpu_ms=cpu_ms, limits=spec.ingest)
    if kind != "pipeline":
        raise InputError(f"--service must be one of {', '.join(SERVICES)}, got {kind!r}")
    from feedstack.serve.service import build_service

    return build_service(project, spec=spec, metrics=metrics)


def _worker_argv(
    root: Path,
    host: str,
    service: str,
    no_metrics: bool,
    synthetic_cpu_ms: float,
) -> Callable[[int, int, int], list[str]]:
    """The command of one worker process (serve/supervisor.py): this command on fixed ports."""

    def argv(index: int, http_port: int, grpc_port: int) -> list[str]:
        out = [sys.executable, "-c", "from feedstack.cli.main import main; main()", "serve"]
        out += ["--project", str(root), "--host", host, "--port", str(http_port)]
        out += ["--grpc-port", str(grpc_port), "--service", service, "--workers", "1"]
        out += ["--synthetic-cpu-ms", str(synthetic_cpu_ms), "--worker-of-supervisor", "--json"]
        if no_metrics:
            out.append("--no-metrics")
        return out

    return argv


def serve(
    project: Path | None = ProjectOption,
    host: str | None = typer.Option(None, "--host", help="Listen address (default: api.host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="HTTP port, 0 = any free (default: api.http_port)."
    ),
    grpc_port: int | None = typer.Option(
        None, "--grpc-port", min=0, max=65535, help="gRPC port (default: api.grpc_port)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Serving processes on the same ports (default: the cores available). Each holds "
        "its own models and caches; the kernel spreads connections over them (SO_REUSEPORT).",
    ),
    no_metrics: bool = typer.Option(
        False, "--no-metrics", help="Turn Prometheus metrics off (to measure their overhead)."
    ),
    service: str = typer.Option(
        "pipeline",
        "--service",
        help="pipeline (the trained project) or synthetic (fixed items: a transport baseline).",
    ),
    synthetic_cpu_ms: float = typer.Option(
        0.0, "--synthetic-cpu-ms", min=0.0, help="Busy CPU per synthetic feed call, in ms."
    ),
    worker_of_supervisor: bool = typer.Option(
        False, "--worker-of-supervisor", hidden=True, help="Internal: one worker of --workers N."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Serve feeds over HTTP (FastAPI) and gRPC until SIGTERM or Ctrl-C.

    With --workers N > 1 a supervisor starts N serving processes on the same ports, restarts one
    that dies, and stops them all gracefully on SIGTERM; any worker's /metrics answers for all.
    API keys come from the environment variable named by api.keys_env (FEEDSTACK_API_KEYS by
    default): comma-separated KEY or KEY:SCOPE+SCOPE entries, scopes feeds, events, admin (a
    bare KEY has feeds and events). Feeds need the feeds scope unless api.public_feeds. The
    per-key rate limit is kept by each worker process. Prints the bound addresses when every
    worker is ready (--json: one line).
    """
    from feedstack.core.redact import install_log_redaction
    from feedstack.core.spec import Spec, load_spec
    from feedstack.serve.supervisor import available_cores

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    install_log_redaction()
    with cli_errors():
        if service not in SERVICES:
            raise InputError(f"--service must be one of {', '.join(SERVICES)}, got {service!r}")
        root = project_dir(project)
        spec = (
            load_spec(root) if service == "pipeline" or (root / "feedstack.yaml").exists() else None
        )
        if spec is None:
            spec = Spec()
        api = spec.api
        n = workers if workers is not None else available_cores()
        bind_host = host if host is not None else api.host
        http_port = port if port is not None else api.http_port
        rpc_port = grpc_port if grpc_port is not None else api.grpc_port
        if n > 1:
            _supervise(root, spec, n, bind_host, http_port, rpc_port, service, no_metrics,
                       synthetic_cpu_ms, as_json)  # fmt: skip
            return
        _serve_one(root, spec, bind_host, http_port, rpc_port, service, no_metrics,
                   synthetic_cpu_ms, worker_of_supervisor, as_json)  # fmt: skip


def _print_ready(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(info) + b"\n")
        sys.stdout.flush()
    else:
        workers = f" ({info['workers']} workers)" if info.get("workers", 1) > 1 else ""
        console.print(
            f"serving HTTP on {info['http']} (docs {info['http']}/docs, "
            f"console {info['http']}/console), "
            f"gRPC on {info['grpc']}{workers}"
        )


def _warn_no_keys(spec: Any) -> None:
    """A malformed key entry fails here (ConfigError), before any worker starts."""
    from feedstack.serve.security import Guard

    api = spec.api
    if not Guard.from_spec(api, ingest=spec.ingest).key_digests and api.require_key:
        closed = "POST /v1/events" if api.public_feeds else "feeds and POST /v1/events"
        console.print(
            f"[yellow]warning:[/yellow] no API keys in ${api.keys_env}: {closed} will answer 401"
        )


def _supervise(
    root: Path,
    spec: Any,
    n: int,
    host: str,
    http_port: int,
    grpc_port: int,
    service: str,
    no_metrics: bool,
    synthetic_cpu_ms: float,
    as_json: bool,
) -> None:
    from feedstack.serve.supervisor import Supervisor

    _warn_no_keys(spec)
    try:
        sup = Supervisor(
            _worker_argv(root, host, service, no_metrics, synthetic_cpu_ms),
            n,
            host,
            http_port,
            grpc_port,
            metrics=not no_metrics,
        )
    except OSError as exc:
        raise InputError(f"cannot listen: {exc}") from None
    extra = {"service": service, "metrics": not no_metrics}
    code = sup.run(on_ready=lambda info: _print_ready({**info, **extra}, as_json))
    if code:
        raise typer.Exit(code)


def _serve_one(
    root: Path,
    spec: Any,
    host: str,
    http_port: int,
    grpc_port: int,
    service: str,
    no_metrics: bool,
    synthetic_cpu_ms: float,
    worker: bool,
    as_json: bool,
) -> None:
    from feedstack.monitor.metrics import ServingMetrics
    from feedstack.serve.security import Guard
    from feedstack.serve.server import Bound, run_server
    from feedstack.serve.supervisor import METRICS_ENV, watch_parent

    if worker:
        watch_parent()  # the supervisor gone (its pipe closed): shut down
    metrics = ServingMetrics(
        enabled=not no_metrics, multiprocess_dir=os.environ.get(METRICS_ENV) if worker else None
    )
    svc = _build(service, root, spec, metrics, synthetic_cpu_ms)
    guard = Guard.from_spec(spec.api, ingest=spec.ingest)
    if not worker:
        _warn_no_keys(spec)

    def ready(bound: Bound) -> None:
        info = {**bound.to_dict(), "service": service, "metrics": not no_metrics}
        _print_ready({**info, "workers": 1, "pids": [os.getpid()]}, as_json)

    try:
        run_server(svc, guard, metrics, host, http_port, grpc_port, on_ready=ready,
                   reuse_port=worker, project=root)  # fmt: skip
    except OSError as exc:
        raise InputError(f"cannot listen: {exc}") from None
    finally:
        close = getattr(svc, "close", None)
        if callable(close):
            close()


def bench_serve(
    project: Path | None = ProjectOption,
    rate: float | None = typer.Option(
        None, "--rate", help="Requests/s, open loop; without it: closed loop to saturation."
    ),
    duration: float = typer.Option(10.0, "--duration", min=1.0, help="Measured seconds."),
    protocol: str = typer.Option("http", "--protocol", help="http or grpc."),
    no_metrics: bool = typer.Option(
        False, "--no-metrics", help="Serve with Prometheus metrics off (their overhead)."
    ),
    service: str = typer.Option(
        "pipeline", "--service", help="pipeline (the project) or synthetic (transport only)."
    ),
    synthetic_cpu_ms: float = typer.Option(
        0.0, "--synthetic-cpu-ms", min=0.0, help="Busy CPU per synthetic feed call, in ms."
    ),
    concurrency: int = typer.Option(
        32, "--concurrency", min=1, help="Closed-loop workers (saturation and the floor)."
    ),
    loadgen: str = typer.Option(
        "auto",
        "--loadgen",
        help="auto (wrk for HTTP saturation without events, when installed), builtin, wrk.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Serving processes (default: serve's, the cores available)."
    ),
    event_share: float = typer.Option(
        0.1,
        "--event-share",
        min=0.0,
        max=0.99,
        help="Share of requests that POST the events (click, dwell) of feeds served in the run.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Load-test `feedstack serve` from a separate process; floor_rps = a bare endpoint, same run.

    Drives the multi-process server a user runs (--workers) with feeds and, for --event-share of
    the requests, the events those feeds cause; every request carries an API key made for the
    run (scopes feeds+events). Prints rps, p50_ms, p95_ms, p99_ms (the feeds'), errors and
    floor_rps, the generator's schedule lag and the server's cores, and records kind "serve" in
    PROJECT/measurements/.
    """
    from feedstack.bench.serve import run_serve_bench

    with cli_errors():
        root = project_dir(project)
        has_spec = (root / "feedstack.yaml").exists()
        if service != "synthetic" and not has_spec:
            raise InputError(f"no feedstack.yaml in {root}: pass --project")
        result = run_serve_bench(
            root if has_spec else None,
            protocol=protocol,
            rate=rate,
            duration_s=duration,
            metrics=not no_metrics,
            service=service,
            synthetic_cpu_ms=synthetic_cpu_ms,
            concurrency=concurrency,
            loadgen=loadgen,
            workers=workers,
            event_share=event_share,
        )
        record_measurement("serve", result, root, as_json)
