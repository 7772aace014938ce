"""``feedstack serve``: the HTTP and gRPC APIs in one process, until SIGTERM."""

from __future__ import annotations

import logging
import sys
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


def serve(
    project: Path | None = ProjectOption,
    host: str | None = typer.Option(None, "--host", help="Listen address (default: api.host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="HTTP port, 0 = any free (default: api.http_port)."
    ),
    grpc_port: int | None = typer.Option(
        None, "--grpc-port", min=0, max=65535, help="gRPC port (default: api.grpc_port)."
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
    as_json: bool = JsonOption,
) -> None:
    """Serve feeds over HTTP (FastAPI) and gRPC until SIGTERM or Ctrl-C.

    API keys come from the environment variable named by api.keys_env (FEEDSTACK_API_KEYS by
    default): comma-separated KEY or KEY:SCOPE+SCOPE entries, scopes feeds, events, admin (a
    bare KEY has feeds and events). Feeds need the feeds scope unless api.public_feeds. Prints
    the bound addresses when ready (--json: one line).
    """
    from feedstack.core.redact import install_log_redaction
    from feedstack.core.spec import Spec, load_spec
    from feedstack.monitor.metrics import ServingMetrics
    from feedstack.serve.security import Guard
    from feedstack.serve.server import Bound, run_server

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    install_log_redaction()
    with cli_errors():
        root = project_dir(project)
        spec = (
            load_spec(root) if service == "pipeline" or (root / "feedstack.yaml").exists() else None
        )
        if spec is None:
            from feedstack.core.spec import Spec

            spec = Spec()
        api = spec.api
        metrics = ServingMetrics(enabled=not no_metrics)
        svc = _build(service, root, spec, metrics, synthetic_cpu_ms)
        guard = Guard.from_spec(api, ingest=spec.ingest)
        if not guard.key_digests and api.require_key:
            closed = "POST /v1/events" if api.public_feeds else "feeds and POST /v1/events"
            console.print(
                f"[yellow]warning:[/yellow] no API keys in ${api.keys_env}: "
                f"{closed} will answer 401"
            )

        def ready(bound: Bound) -> None:
            info = {**bound.to_dict(), "service": service, "metrics": not no_metrics}
            if as_json:
                sys.stdout.buffer.write(orjson.dumps(info) + b"\n")
                sys.stdout.flush()
            else:
                console.print(
                    f"serving HTTP on {info['http']} (docs {info['http']}/docs), "
                    f"gRPC on {info['grpc']}"
                )

        try:
            run_server(
                svc,
                guard,
                metrics,
                host if host is not None else api.host,
                port if port is not None else api.http_port,
                grpc_port if grpc_port is not None else api.grpc_port,
                on_ready=ready,
            )
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
        "auto", "--loadgen", help="auto (wrk for HTTP saturation when installed), builtin, wrk."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Load-test `feedstack serve` from a separate process; floor_rps = a bare endpoint, same run.

    Prints rps, p50_ms, p95_ms, p99_ms, errors and floor_rps, and records kind "serve" in
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
        )
        record_measurement("serve", result, root, as_json)
