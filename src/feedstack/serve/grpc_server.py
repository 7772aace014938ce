"""The gRPC API (proto/feedstack/v1/feed.proto): Feed and Events, the standard health service
(grpc.health.v1) and server reflection, in front of the same ``FeedService`` as HTTP.

The API key travels in the ``x-api-key`` metadata; errors are mapped by ``serve.errors.reply_for``
(the same table as HTTP) and the field they concern is sent in the ``error-field`` trailing
metadata beside ``error-code``. The server is grpcio's threaded one: it runs beside uvicorn's
event loop in the same process without sharing it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from feedstack.core.ids import MAX_LABEL_CHARS, id_problem
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.errors import RequestInvalid, kind_of, reply_for
from feedstack.serve.grpc_gen import feed_pb2, feed_pb2_grpc
from feedstack.serve.security import Guard
from feedstack.serve.types import FeedService

FEED_SERVICE = feed_pb2.DESCRIPTOR.services_by_name["Feed"].full_name
EVENTS_SERVICE = feed_pb2.DESCRIPTOR.services_by_name["Events"].full_name
# Threads serving RPCs: as many as the HTTP feed pool (serve/http.py FEED_THREADS, measured
# there): the pipeline's I/O and native ranking release the GIL, so calls overlap.
MAX_WORKERS = 16


def _api_key(context: grpc.ServicerContext) -> str | None:
    for k, v in context.invocation_metadata():
        if k == "x-api-key":
            return str(v)
    return None


class _Base:
    def __init__(self, service: FeedService, guard: Guard, metrics: ServingMetrics) -> None:
        self.service = service
        self.guard = guard
        self.metrics = metrics

    def _observe(self, endpoint: str, code: str, began: float) -> None:
        self.metrics.request_seconds.labels(endpoint, "grpc").observe(time.perf_counter() - began)
        self.metrics.requests.labels(endpoint, "grpc", code).inc()

    def _abort(
        self, endpoint: str, exc: BaseException, context: grpc.ServicerContext, began: float
    ) -> NoReturn:
        reply = reply_for(exc)
        self.metrics.errors.labels(endpoint, kind_of(exc)).inc()
        self._observe(endpoint, f"{reply.http_status // 100}xx", began)
        trailers: list[tuple[str, str]] = [("error-code", reply.code)]
        if reply.field is not None:
            trailers.append(("error-field", reply.field))
        context.set_trailing_metadata(trailers)
        context.abort(reply.grpc_code, reply.message)
        raise AssertionError("context.abort returned")  # pragma: no cover


class FeedServicer(_Base, feed_pb2_grpc.FeedServicer):
    def GetFeed(
        self, request: feed_pb2.FeedRequest, context: grpc.ServicerContext
    ) -> feed_pb2.FeedResponse:
        began = time.perf_counter()
        try:
            who = self.guard.authenticate(_api_key(context), "feeds")
            self.guard.admit(who, "feeds")
            problem = id_problem(request.user_id)
            if problem is not None:
                raise RequestInvalid(f"user_id: {problem}", "user_id")
            if request.region and id_problem(request.region, MAX_LABEL_CHARS) is not None:
                raise RequestInvalid(
                    f"region: {id_problem(request.region, MAX_LABEL_CHARS)}", "region"
                )
            k = self.guard.feed_k(request.k)
            feed = self.service.feed(
                request.user_id, k, request.region or None, request.request_id or None
            )
        except Exception as exc:
            self._abort("feed", exc, context, began)
        out = feed_pb2.FeedResponse(
            request_id=feed.request_id,
            user_id=feed.user_id,
            model_version=feed.model_version,
            arm=feed.arm,
            experiment=feed.experiment or "",
            fallback=self.guard.shown_fallback(who, feed.fallback) or "",
            items=[
                feed_pb2.FeedItem(
                    item_id=i.item_id, score=i.score, source=i.source, position=i.position
                )
                for i in feed.items
            ],
        )
        self._observe("feed", "2xx", began)
        return out


class EventsServicer(_Base, feed_pb2_grpc.EventsServicer):
    def Ingest(
        self, request: feed_pb2.IngestRequest, context: grpc.ServicerContext
    ) -> feed_pb2.IngestResponse:
        began = time.perf_counter()
        try:
            self.guard.admit(self.guard.authenticate(_api_key(context), "events"))
            self.guard.event_count(len(request.events))
            counts = self.service.ingest(list(request.events))
        except Exception as exc:
            self._abort("events", exc, context, began)
        self._observe("events", "2xx", began)
        return feed_pb2.IngestResponse(
            accepted=counts.accepted,
            duplicates=counts.duplicates,
            rejected=counts.rejected,
            errors=[
                feed_pb2.Rejection(field=e.get("field", ""), reason=e.get("reason", ""))
                for e in counts.errors
            ],
        )


def create_grpc_server(
    service: FeedService,
    guard: Guard,
    metrics: ServingMetrics | None = None,
    address: str = "127.0.0.1:0",
    max_workers: int = MAX_WORKERS,
    reuse_port: bool = False,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A bound, not yet started server bound to ``address``; returns it, the bound port
    and the health servicer (the caller flips it to SERVING once the service is ready).
    ``reuse_port``: SO_REUSEPORT, for worker processes sharing the port (off otherwise, so a
    second server on a taken port fails instead of silently sharing it)."""
    m = metrics if metrics is not None else ServingMetrics(enabled=False)
    options: Sequence[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", guard.api.max_body_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
    feed_pb2_grpc.add_FeedServicer_to_server(FeedServicer(service, guard, m), server)  # type: ignore[no-untyped-call]
    feed_pb2_grpc.add_EventsServicer_to_server(EventsServicer(service, guard, m), server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        FEED_SERVICE,
        EVENTS_SERVICE,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"gRPC server could not bind {address}")
    return server, port, health_servicer


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Overall ("") and per-service health: SERVING or NOT_SERVING."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", FEED_SERVICE, EVENTS_SERVICE):
        health_servicer.set(name, status)
