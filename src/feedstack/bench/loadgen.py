"""The load generator of ``feedstack bench serve`` and ``bench soak``, run in its own process:

    python -m feedstack.bench.loadgen '<json config>'   ->   one JSON result on stdout

Two modes:

* ``rate`` (open loop): request ``i`` is *scheduled* at ``t0 + i / rate`` whatever happened to
  earlier ones, and its latency is measured from that scheduled time, not from when it was sent.
  A stalled server therefore shows up in the latency of every request that should have gone out
  during the stall (no coordinated omission, Tene's "How NOT to measure latency"). HTTP/1.1 has
  one request in flight per connection, so requests wait for an idle keep-alive connection (up to
  ``connections`` are opened); that wait is in the latency too. The generator says how late it
  sent (``lag_ms`` percentiles: its own schedule lag, near 0 unless it is the bottleneck) and
  how much CPU it used (``loadgen_cores``), so a busy generator is visible in the result.
* ``saturate`` (closed loop): ``concurrency`` workers send back to back for ``duration_s``; the
  completed requests per second is the saturation throughput (latency from send).

The traffic is the real mix: a share ``event_share`` of the requests POST the events that a feed
causes (a click on one of its items, position-biased, with its dwell time, carrying the feed's
request id) drawn from the feeds actually served in this run; the rest are feeds. Feeds are
reported apart (``p50_ms``.. are the feeds'; ``events`` holds the posts'). Event times follow
``sim_start_s`` (the served log's clock, advancing with the wall clock) when given.

HTTP uses a minimal asyncio keep-alive client on uvloop (precomputed GETs, reads Content-Length
bodies); gRPC uses grpc.aio over ``channels`` channels (each its own connection, so a
multi-process server sees several; one HTTP/2 connection would pin every call to one worker).
Targets: ``feed`` or ``bare`` (GET /v1/ping or the standard Health/Check: the floor). Every
request carries one of ``api_keys`` in turn (feeds need the ``feeds`` scope, posts ``events``).

The user mix is precomputed before the clock starts: Zipf(``zipf_s``) over the given users in a
shuffled order (a few heavy users, a long tail), a share ``cold_share`` of unknown users, and
k = 10 (60 %), 20 (30 %) or uniform 5..50 (10 %).
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from feedstack.bench.tally import Tally, result

DRAIN_S = 3.0  # after the last send, in-flight requests get this long before they count as errors
SERVED_POOL = 2_000  # recent feeds the events are drawn from


@dataclass(frozen=True)
class Request:
    user: str
    k: int
    event: bool = False  # this slot posts the events of a served feed instead of a feed


def user_mix(
    users: list[str],
    n: int,
    seed: int,
    zipf_s: float = 1.0,
    cold_share: float = 0.05,
    event_share: float = 0.0,
) -> list[Request]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users)) if users else np.zeros(0, dtype=np.int64)
    out: list[Request] = []
    if users:
        weights = 1.0 / np.arange(1, len(users) + 1, dtype=np.float64) ** zipf_s
        ranks = rng.choice(len(users), size=n, p=weights / weights.sum())
    else:
        ranks = np.zeros(n, dtype=np.int64)
    cold = rng.random(n) < (cold_share if users else 1.0)
    kind = rng.random(n)
    k_tail = rng.integers(5, 51, size=n)
    # Its own stream: the feed mix of a seed is the same with or without events.
    post = np.random.default_rng([seed, 1]).random(n) < event_share
    for i in range(n):
        k = 10 if kind[i] < 0.6 else 20 if kind[i] < 0.9 else int(k_tail[i])
        user = f"cold-{rng.integers(1 << 30)}" if cold[i] else users[int(order[ranks[i]])]
        out.append(Request(user, k, bool(post[i])))
    return out


class EventMaker:
    """The events a served feed causes: a click on one item (position p with weight 1/(p+1),
    the position bias of a feed) and the dwell on it, with the feed's request id."""

    def __init__(self, seed: int, sim_start_s: float | None) -> None:
        self.rng = random.Random(seed)
        self.served: deque[tuple[str, str, list[str]]] = deque(maxlen=SERVED_POOL)
        self.sim_start_s = sim_start_s
        self.wall_start = time.time()
        self.n = 0

    def note(self, request_id: str, user_id: str, items: list[str]) -> None:
        if items:
            self.served.append((request_id, user_id, items))

    def note_json(self, body: bytes) -> None:
        try:
            doc = orjson.loads(body)
            self.note(doc["request_id"], doc["user_id"], [i["item_id"] for i in doc["items"]])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return

    def make(self) -> list[bytes] | None:
        """Two event payloads (click, dwell), or None before any feed was served."""
        if not self.served:
            return None
        rid, user, items = self.served[self.rng.randrange(len(self.served))]
        weights = [1.0 / (p + 1) for p in range(len(items))]
        pos = self.rng.choices(range(len(items)), weights)[0]
        now = time.time()
        t = now if self.sim_start_s is None else self.sim_start_s + (now - self.wall_start)
        stamp = datetime.fromtimestamp(t, UTC).isoformat()
        self.n += 1
        base = {"event_time": stamp, "user_id": user, "article_id": items[pos], "request_id": rid}
        click = {"type": "click", "event_id": f"lg-{rid}-{self.n}-c", "position": pos, **base}
        dwell_ms = int(self.rng.lognormvariate(9.5, 0.8))  # median ~13 s
        dwell = {"type": "dwell", "event_id": f"lg-{rid}-{self.n}-d", "dwell_ms": dwell_ms, **base}
        return [orjson.dumps(click), orjson.dumps(dwell)]


class _HttpConn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        at = low.find(b"content-length:")
        if at < 0:
            raise ConnectionError("response without Content-Length")
        n = int(low[at + 15 : low.find(b"\r\n", at)])
        body = await self.reader.readexactly(n) if n else b""
        return status, body


class HttpDriver:
    def __init__(
        self,
        host: str,
        port: int,
        target: str,
        max_conns: int,
        api_keys: list[str] | None = None,
        regions: dict[str, str] | None = None,
    ) -> None:
        self.host, self.port, self.target = host, port, target
        # user -> region: each feed request names it (a load balancer shards by it).
        self.regions = regions or {}
        self.max_conns = max_conns
        # Feeds and posts carry the run's keys in turn (the rate limit is per key).
        self.key_headers = [f"X-API-Key: {k}\r\n" for k in api_keys or [] if k] or [""]
        self.n_requests = 0
        self.idle: asyncio.Queue[_HttpConn] = asyncio.Queue()  # FIFO: waiters are served in order
        self.opened = 0

    def _key_header(self) -> str:
        self.n_requests += 1
        return self.key_headers[self.n_requests % len(self.key_headers)]

    def encode(self, req: Request) -> bytes:
        path = f"/v1/feed/{req.user}?k={req.k}" if self.target == "feed" else "/v1/ping"
        if self.target == "feed" and (region := self.regions.get(req.user)) is not None:
            path += f"&region={quote(region, safe='')}"
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self._key_header()}\r\n".encode()

    def encode_events(self, payloads: list[bytes]) -> bytes:
        body = b"\n".join(payloads)
        head = (
            f"POST /v1/events HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/x-ndjson\r\n{self._key_header()}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def _acquire(self) -> _HttpConn:
        if self.idle.empty() and self.opened < self.max_conns:
            self.opened += 1
            try:
                r, w = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
            return _HttpConn(r, w)
        return await self.idle.get()

    async def call(self, data: Any, maker: EventMaker | None = None) -> bool:
        try:
            conn = await self._acquire()
        except OSError:
            return False
        try:
            status, body = await conn.send(data)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.opened -= 1
            conn.writer.close()
            return False
        self.idle.put_nowait(conn)
        if maker is not None and status == 200:
            maker.note_json(body)
        return 200 <= status < 300

    async def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().writer.close()


class GrpcDriver:
    def __init__(
        self,
        host: str,
        port: int,
        target: str,
        channels: int = 4,
        api_keys: list[str] | None = None,
    ) -> None:
        import grpc.aio
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from feedstack.serve.grpc_gen import feed_pb2, feed_pb2_grpc

        self.grpc = grpc
        # A local subchannel pool per channel: separate connections (grpc would share one).
        opts = [("grpc.use_local_subchannel_pool", 1)]
        self.channels = [
            grpc.aio.insecure_channel(f"{host}:{port}", options=opts)
            for _ in range(max(1, channels))
        ]
        self.target = target
        self.feed_pb2 = feed_pb2
        # Feeds and posts carry the run's keys in turn (the rate limit is per key).
        keys = [k for k in api_keys or [] if k]
        self.metadata: list[Any] = [(("x-api-key", k),) for k in keys] or [None]
        self.n_requests = 0
        self.health_req = health_pb2.HealthCheckRequest(service="")
        self.i = 0
        if target == "feed":
            self.methods = [feed_pb2_grpc.FeedStub(c).GetFeed for c in self.channels]  # type: ignore[no-untyped-call]
        else:
            self.methods = [health_pb2_grpc.HealthStub(c).Check for c in self.channels]
        self.ingest = [feed_pb2_grpc.EventsStub(c).Ingest for c in self.channels]  # type: ignore[no-untyped-call]

    def encode(self, req: Request) -> Any:
        if self.target == "feed":
            return self.feed_pb2.FeedRequest(user_id=req.user, k=req.k)
        return self.health_req

    def encode_events(self, payloads: list[bytes]) -> Any:
        return ("events", self.feed_pb2.IngestRequest(events=payloads))

    async def call(self, data: Any, maker: EventMaker | None = None) -> bool:
        self.i = (self.i + 1) % len(self.channels)
        try:
            self.n_requests += 1
            meta = self.metadata[self.n_requests % len(self.metadata)]
            if isinstance(data, tuple):
                await self.ingest[self.i](data[1], timeout=10.0, metadata=meta)
                return True
            resp = await self.methods[self.i](data, timeout=10.0, metadata=meta)
        except self.grpc.aio.AioRpcError:
            return False
        if maker is not None and self.target == "feed":
            maker.note(resp.request_id, resp.user_id, [it.item_id for it in resp.items])
        return True

    async def close(self) -> None:
        for c in self.channels:
            await c.close()


async def open_loop(
    driver: Any,
    mix: list[Request],
    payloads: list[Any],
    rate: float,
    maker: EventMaker | None,
    window_s: float = 0.0,
) -> dict[str, Any]:
    tally = Tally()
    pending: set[asyncio.Task[None]] = set()
    clock = time.perf_counter

    async def one(i: int, scheduled: float) -> None:
        tally.lags.append(clock() - scheduled)
        data = payloads[i]
        is_event = False
        if mix[i].event and maker is not None:
            events = maker.make()
            if events is None:
                tally.events_as_feeds += 1
            else:
                data, is_event = driver.encode_events(events), True
        ok = await driver.call(data, None if is_event else maker)
        if ok:
            lat = clock() - scheduled
            if is_event:
                tally.event_lat.append(lat)
            else:
                tally.feed_lat.append(lat)
                tally.feed_at.append(scheduled - t0)
        elif is_event:
            tally.event_errors += 1
        else:
            tally.feed_errors += 1
            tally.error_at.append(scheduled - t0)

    t0 = clock() + 0.01
    n = len(payloads)
    i = 0
    while i < n:
        now = clock()
        due = min(n, int((now - t0) * rate) + 1)
        while i < due:  # send everything that is due, each with its own scheduled time
            task = asyncio.ensure_future(one(i, t0 + i / rate))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i / rate - clock()))
    elapsed = n / rate
    if pending:
        _, not_done = await asyncio.wait(pending, timeout=DRAIN_S)
        for task in not_done:
            task.cancel()
        tally.feed_errors += len(not_done)
    out = result(tally, elapsed, window_s)
    out["offered_rps"] = rate
    return out


async def closed_loop(
    driver: Any,
    mix: list[Request],
    payloads: list[Any],
    concurrency: int,
    duration_s: float,
    maker: EventMaker | None,
) -> dict[str, Any]:
    tally = Tally()
    clock = time.perf_counter
    end = clock() + duration_s
    n = len(payloads)

    async def worker(w: int) -> None:
        i = w
        while clock() < end:
            data, is_event = payloads[i % n], False
            if mix[i % n].event and maker is not None:
                events = maker.make()
                if events is not None:
                    data, is_event = driver.encode_events(events), True
            began = clock()
            ok = await driver.call(data, None if is_event else maker)
            if ok:
                (tally.event_lat if is_event else tally.feed_lat).append(clock() - began)
            elif is_event:
                tally.event_errors += 1
            else:
                tally.feed_errors += 1
            i += concurrency

    began = clock()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    out = result(tally, clock() - began, 0.0)
    out["concurrency"] = concurrency
    return out


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    host, port = cfg["host"], int(cfg["port"])
    keys = [str(k) for k in cfg.get("api_keys", [])]
    if cfg["protocol"] == "grpc":
        driver: Any = GrpcDriver(host, port, cfg["target"], int(cfg.get("channels", 4)), keys)
    else:
        regions = {str(u): str(r) for u, r in (cfg.get("regions") or {}).items()}
        conns = int(cfg.get("connections", 64))
        driver = HttpDriver(host, port, cfg["target"], conns, keys, regions)
    duration = float(cfg["duration_s"])
    rate = cfg.get("rate")
    n = int(rate * duration) if rate else int(cfg.get("pool", 20_000))
    share = float(cfg.get("event_share", 0.0)) if cfg["target"] == "feed" else 0.0
    seed = int(cfg.get("seed", 0))
    mix = user_mix(list(cfg.get("users", [])), n, seed, event_share=share)
    payloads = [driver.encode(r) for r in mix]
    maker = EventMaker(seed, cfg.get("sim_start_s")) if share > 0 else None
    try:
        warm = float(cfg.get("warmup_s", 1.0))
        if warm > 0:  # connections, caches, the server's first requests: not measured
            await closed_loop(driver, mix, payloads, 4, warm, maker)
        cpu0, wall0 = _cpu_s(), time.perf_counter()
        if rate:
            window = float(cfg.get("window_s", 0.0))
            res = await open_loop(driver, mix, payloads, float(rate), maker, window)
        else:
            conc = int(cfg.get("concurrency", 32))
            res = await closed_loop(driver, mix, payloads, conc, duration, maker)
        cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    finally:
        await driver.close()
    res.update(protocol=cfg["protocol"], target=cfg["target"], mode="rate" if rate else "saturate")
    res["loadgen_cpu_s"] = round(cpu, 3)
    res["loadgen_cores"] = round(cpu / wall, 3) if wall > 0 else None
    return res


def main() -> None:
    """The config as JSON: the first argument, or stdin when it is ``-`` (a config naming
    thousands of users or keys outgrows the kernel's limit on one argument)."""
    raw = sys.stdin.buffer.read() if sys.argv[1] == "-" else sys.argv[1].encode()
    cfg = orjson.loads(raw)
    if cfg["protocol"] == "http":
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover (uvicorn[standard] brings it)
            pass
    result = asyncio.run(run(cfg))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
