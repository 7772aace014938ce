"""The operator's console and the offline API docs, mounted on the HTTP app.

    GET /console              the page (static HTML + JS; charts by uPlot, vendored in static/)
    GET /v1/console/series    live series: requests/s, p50/p99 vs the SLO, fallbacks by reason,
                              CTR by version and arm, freshness lag, drift vs thresholds
                              (console_series.py)
    GET /v1/console/state     rollout state and decisions, experiments with lift and interval,
                              lineage of the served models (console_state.py)
    GET /console/report       the project's design report, when one was written
    GET /docs                 Swagger UI from the vendored swagger-ui-dist (no CDN)
    GET /static/...           the vendored assets (uPlot, swagger-ui-dist) and the console's own

Read-only. When the server has API keys, the data endpoints need a key with the ``admin`` scope
(fallback reasons and lineage are internals, serve/auth.py); the page itself holds no data and
takes the key from the URL fragment (``/console#key=...``: a fragment never reaches a server or
its logs) or a prompt, and sends it as ``X-API-Key``. Without keys (a local run) it is open.
Nothing is fetched from the network at run time: the page works offline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from feedstack.core.spec import Spec
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.console_series import ConsoleSeries
from feedstack.serve.console_state import ConsoleState
from feedstack.serve.errors import NotFound, reply_for
from feedstack.serve.security import Guard

STATIC = Path(__file__).parent / "static"
JSON = "application/json"


def install_docs(app: FastAPI) -> None:
    """``/docs`` served from the vendored swagger-ui-dist (create the app with docs_url=None)."""
    _mount_static(app)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="feedstack API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )


def _mount_static(app: FastAPI) -> None:
    if not any(getattr(r, "path", None) == "/static" for r in app.routes):
        app.mount("/static", StaticFiles(directory=STATIC), name="static")


def freshness_of(service: Any) -> Callable[[], float | None]:
    """Seconds between the serving clock and the newest event behind the served item features
    (None before any event); services without item features have none."""
    items, clock = getattr(service, "items", None), getattr(service, "clock", None)
    if items is None or clock is None:
        return lambda: None

    def lag() -> float | None:
        mark = items.watermark_s
        if mark is None:
            return None
        return max(0.0, float(clock.now().timestamp()) - float(mark))

    return lag


def versions_of(service: Any) -> Callable[[], Mapping[str, str]]:
    def versions() -> Mapping[str, str]:
        models = getattr(service, "models", None)
        return dict(models.versions) if models is not None else {}

    return versions


def report_path(project: Path | None) -> Path | None:
    """The design report: PROJECT/report/report.html, or the demo's OUT/report/report.html."""
    if project is None:
        return None
    for p in (project / "report" / "report.html", project.parent / "report" / "report.html"):
        if p.is_file():
            return p
    return None


def install_console(
    app: FastAPI,
    guard: Guard,
    metrics: ServingMetrics,
    service: Any,
    spec: Spec,
    project: Path | None,
    *,
    sample: bool = True,
) -> ConsoleSeries:
    """Mount the console; ``sample`` starts the once-a-second sampler (a daemon thread)."""
    _mount_static(app)
    series = ConsoleSeries(metrics, spec, freshness_of(service))
    state = ConsoleState(project, spec, versions_of(service))
    if sample:
        series.start()

    def check(request: Request) -> Response | None:
        if not guard.keys:
            return None  # no keys configured: a local run, as for the rest of the API
        try:
            guard.authenticate(request.headers.get("x-api-key"), "admin")
        except Exception as exc:
            reply = reply_for(exc)
            return Response(orjson.dumps(reply.body()), reply.http_status, media_type=JSON)
        return None

    @app.get("/console", include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(STATIC / "console" / "console.html", media_type="text/html")

    @app.get("/v1/console/series", summary="Console: live series (admin key when keys are set)")
    async def console_series(request: Request) -> Response:
        denied = check(request)
        if denied is not None:
            return denied
        series.start()  # lazily, on an app built without sampling (tests, benchmarks)
        return Response(orjson.dumps(series.to_json()), 200, media_type=JSON)

    @app.get("/v1/console/state", summary="Console: rollout, experiments, lineage (admin key)")
    async def console_state(request: Request) -> Response:
        denied = check(request)
        if denied is not None:
            return denied
        doc = await run_in_threadpool(state.to_json)
        doc["links"] = {
            "docs": "/docs",
            "openapi": "/openapi.json",
            "metrics": "/metrics",
            "report": "/console/report" if report_path(project) is not None else None,
        }
        return Response(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), 200, media_type=JSON)

    @app.get("/console/report", include_in_schema=False)
    async def console_report(request: Request) -> Response:
        denied = check(request)
        if denied is not None:
            return denied
        path = report_path(project)
        if path is None:
            reply = reply_for(NotFound("no design report yet: run `feedstack report`", "report"))
            return Response(orjson.dumps(reply.body()), reply.http_status, media_type=JSON)
        return FileResponse(path, media_type="text/html")

    return series
