"""The gRPC API in process on a free port: feed, events, auth, caps, health, reflection."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from feedstack.core.spec import Api
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.grpc_gen import feed_pb2, feed_pb2_grpc
from feedstack.serve.grpc_server import create_grpc_server, set_serving
from feedstack.serve.security import Guard
from feedstack.serve.synthetic import SyntheticFeedService
from tests.factories import click

KEY = "grpc-key"
AUTH = (("x-api-key", KEY),)


@pytest.fixture
def channel() -> Iterator[grpc.Channel]:
    api = Api(max_events_per_request=3)
    guard = Guard.from_spec(api, {api.keys_env: f"{KEY},web:feeds,ops:feeds+admin"})
    service = SyntheticFeedService(
        failing_users=frozenset({"boom"}), fallback_users={"ghost": "cold_user"}
    )
    server, port, health = create_grpc_server(service, guard, ServingMetrics())
    server.start()
    set_serving(health, True)
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield ch
    ch.close()
    server.stop(None).wait()


def _trailer(err: grpc.RpcError, name: str) -> str | None:
    for k, v in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if k == name:
            return str(v)
    return None


def test_feed(channel: grpc.Channel) -> None:
    stub = feed_pb2_grpc.FeedStub(channel)
    resp = stub.GetFeed(feed_pb2.FeedRequest(user_id="u1", k=12, request_id="r1"), metadata=AUTH)
    assert resp.user_id == "u1" and resp.request_id == "r1"
    assert resp.model_version == "synthetic-1" and resp.fallback == ""
    assert [i.position for i in resp.items] == list(range(12))
    default = stub.GetFeed(feed_pb2.FeedRequest(user_id="u1"), metadata=AUTH)
    assert len(default.items) == Api().k_default
    # Same answer as the HTTP path's service for the same user: the transports add nothing.
    same = SyntheticFeedService().feed("u1", 12)
    assert [i.item_id for i in resp.items] == [i.item_id for i in same.items]


def test_feed_errors(channel: grpc.Channel) -> None:
    stub = feed_pb2_grpc.FeedStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetFeed(feed_pb2.FeedRequest(user_id="u1", k=Api().k_max + 1), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert _trailer(err.value, "error-field") == "k"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetFeed(feed_pb2.FeedRequest(user_id="boom"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert err.value.details() == "internal error"  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.GetFeed(feed_pb2.FeedRequest(user_id="u\x001"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert _trailer(err.value, "error-field") == "user_id"
    assert "NUL" in err.value.details()  # type: ignore[attr-defined]


def test_feed_auth_and_what_a_key_sees(channel: grpc.Channel) -> None:
    """The same rules as HTTP: a key with the feeds scope; only admin keys see the reason."""
    stub = feed_pb2_grpc.FeedStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetFeed(feed_pb2.FeedRequest(user_id="u1"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    req = feed_pb2.FeedRequest(user_id="ghost")
    assert stub.GetFeed(req, metadata=(("x-api-key", "web"),)).fallback == "degraded"
    assert stub.GetFeed(req, metadata=(("x-api-key", "ops"),)).fallback == "cold_user"
    events = feed_pb2_grpc.EventsStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        events.Ingest(
            feed_pb2.IngestRequest(events=[orjson.dumps(click(1))]),
            metadata=(("x-api-key", "web"),),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def test_events(channel: grpc.Channel) -> None:
    stub = feed_pb2_grpc.EventsStub(channel)
    req = feed_pb2.IngestRequest(events=[orjson.dumps(click(1)), b'{"type": "click"}'])
    with pytest.raises(grpc.RpcError) as err:
        stub.Ingest(req)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.Ingest(req, metadata=(("x-api-key", "wrong"),))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    resp = stub.Ingest(req, metadata=AUTH)
    assert (resp.accepted, resp.duplicates, resp.rejected) == (1, 0, 1)
    assert resp.errors[0].field
    again = stub.Ingest(req, metadata=AUTH)
    assert (again.accepted, again.duplicates) == (0, 1)
    too_many = feed_pb2.IngestRequest(events=[orjson.dumps(click(i)) for i in range(4)])
    with pytest.raises(grpc.RpcError) as err:
        stub.Ingest(too_many, metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert _trailer(err.value, "error-field") == "events"


def test_health(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", "feedstack.v1.Feed", "feedstack.v1.Events"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    (resp,) = list(stub.ServerReflectionInfo(iter([req])))
    names = {s.name for s in resp.list_services_response.service}
    assert {"feedstack.v1.Feed", "feedstack.v1.Events", "grpc.health.v1.Health"} <= names
    # The descriptors are served too, so grpcurl-style clients can call without the .proto.
    req = reflection_pb2.ServerReflectionRequest(file_containing_symbol="feedstack.v1.Feed")
    (resp,) = list(stub.ServerReflectionInfo(iter([req])))
    assert resp.file_descriptor_response.file_descriptor_proto
