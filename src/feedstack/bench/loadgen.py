"""The load generator of ``feedstack bench serve``, run in its own process:

    python -m feedstack.bench.loadgen '<json config>'   ->   one JSON result on stdout

Two modes:

* ``rate`` (open loop): request ``i`` is *scheduled* at ``t0 + i / rate`` whatever happened to
  earlier ones, and its latency is measured from that scheduled time, not from when it was sent.
  A stalled server therefore shows up in the latency of every request that should have gone out
  during the stall (no coordinated omission, Tene's "How NOT to measure latency"). HTTP/1.1 has
  one request in flight per connection, so requests wait for an idle keep-alive connection (up to
  ``connections`` are opened); that wait is in the latency too. ``lag_p99_ms`` reports how late
  the generator itself sent (near 0 unless the generator is the bottleneck).
* ``saturate`` (closed loop): ``concurrency`` workers send back to back for ``duration_s``; the
  completed requests per second is the saturation throughput (latency from send).

HTTP uses a minimal asyncio keep-alive client on uvloop (GET with precomputed bytes, reads
Content-Length bodies); gRPC uses grpc.aio on one channel (HTTP/2 multiplexes the calls).
Targets: ``feed`` (GET /v1/feed/{user}?k= or Feed/GetFeed) or ``bare`` (GET /v1/ping or the
standard Health/Check: the same framework returning a constant, the floor).

The user mix is precomputed before the clock starts: Zipf(``zipf_s``) over the given users in a
shuffled order (a few heavy users, a long tail), a share ``cold_share`` of unknown users, and
k = 10 (60 %), 20 (30 %) or uniform 5..50 (10 %).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

DRAIN_S = 3.0  # after the last send, in-flight requests get this long before they count as errors


@dataclass(frozen=True)
class Request:
    user: str
    k: int


def user_mix(
    users: list[str], n: int, seed: int, zipf_s: float = 1.0, cold_share: float = 0.05
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
    for i in range(n):
        k = 10 if kind[i] < 0.6 else 20 if kind[i] < 0.9 else int(k_tail[i])
        user = f"cold-{rng.integers(1 << 30)}" if cold[i] else users[int(order[ranks[i]])]
        out.append(Request(user, k))
    return out


class _HttpConn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> int:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        at = low.find(b"content-length:")
        if at < 0:
            raise ConnectionError("response without Content-Length")
        n = int(low[at + 15 : low.find(b"\r\n", at)])
        if n:
            await self.reader.readexactly(n)
        return status


class HttpDriver:
    def __init__(
        self, host: str, port: int, target: str, max_conns: int, api_key: str | None = None
    ) -> None:
        self.host, self.port, self.target = host, port, target
        self.max_conns = max_conns
        self.key_header = f"X-API-Key: {api_key}\r\n" if api_key else ""
        self.idle: asyncio.Queue[_HttpConn] = asyncio.Queue()  # FIFO: waiters are served in order
        self.opened = 0

    def encode(self, req: Request) -> bytes:
        path = f"/v1/feed/{req.user}?k={req.k}" if self.target == "feed" else "/v1/ping"
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.key_header}\r\n".encode()

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

    async def call(self, data: Any) -> bool:
        try:
            conn = await self._acquire()
        except OSError:
            return False
        try:
            status = await conn.send(data)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.opened -= 1
            conn.writer.close()
            return False
        self.idle.put_nowait(conn)
        return 200 <= status < 300

    async def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().writer.close()


class GrpcDriver:
    def __init__(self, host: str, port: int, target: str, api_key: str | None = None) -> None:
        import grpc.aio
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from feedstack.serve.grpc_gen import feed_pb2, feed_pb2_grpc

        self.grpc = grpc
        self.channel = grpc.aio.insecure_channel(f"{host}:{port}")
        self.target = target
        self.metadata = (("x-api-key", api_key),) if api_key else None
        self.feed_pb2 = feed_pb2
        self.health_req = health_pb2.HealthCheckRequest(service="")
        if target == "feed":
            self.method = feed_pb2_grpc.FeedStub(self.channel).GetFeed  # type: ignore[no-untyped-call]
        else:
            self.method = health_pb2_grpc.HealthStub(self.channel).Check

    def encode(self, req: Request) -> Any:
        if self.target == "feed":
            return self.feed_pb2.FeedRequest(user_id=req.user, k=req.k)
        return self.health_req

    async def call(self, data: Any) -> bool:
        try:
            await self.method(data, timeout=10.0, metadata=self.metadata)
        except self.grpc.aio.AioRpcError:
            return False
        return True

    async def close(self) -> None:
        await self.channel.close()


def _summary(lat_s: list[float], errors: int, elapsed_s: float) -> dict[str, Any]:
    ms = np.asarray(lat_s, dtype=np.float64) * 1000.0
    pct = np.percentile(ms, [50, 95, 99]) if ms.size else np.full(3, float("nan"))
    return {
        "requests": int(ms.size) + errors,
        "ok": int(ms.size),
        "errors": errors,
        "rps": round(ms.size / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "p50_ms": round(float(pct[0]), 3),
        "p95_ms": round(float(pct[1]), 3),
        "p99_ms": round(float(pct[2]), 3),
        "max_ms": round(float(ms.max()), 3) if ms.size else float("nan"),
        "elapsed_s": round(elapsed_s, 3),
    }


async def open_loop(driver: Any, payloads: list[Any], rate: float) -> dict[str, Any]:
    lat: list[float] = []
    lags: list[float] = []
    errors = 0
    pending: set[asyncio.Task[None]] = set()
    clock = time.perf_counter

    async def one(data: Any, scheduled: float) -> None:
        nonlocal errors
        lags.append(clock() - scheduled)
        ok = await driver.call(data)
        if ok:
            lat.append(clock() - scheduled)
        else:
            errors += 1

    t0 = clock() + 0.01
    n = len(payloads)
    i = 0
    while i < n:
        now = clock()
        due = min(n, int((now - t0) * rate) + 1)
        while i < due:  # send everything that is due, each with its own scheduled time
            task = asyncio.ensure_future(one(payloads[i], t0 + i / rate))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i / rate - clock()))
    elapsed = n / rate
    if pending:
        _, not_done = await asyncio.wait(pending, timeout=DRAIN_S)
        for t in not_done:
            t.cancel()
        errors += len(not_done)
    out = _summary(lat, errors, elapsed)
    out["offered_rps"] = rate
    out["lag_p99_ms"] = round(float(np.percentile(np.asarray(lags) * 1000.0, 99)), 3)
    return out


async def closed_loop(
    driver: Any, payloads: list[Any], concurrency: int, duration_s: float
) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    clock = time.perf_counter
    end = clock() + duration_s
    n = len(payloads)

    async def worker(w: int) -> None:
        nonlocal errors
        i = w
        while clock() < end:
            began = clock()
            if await driver.call(payloads[i % n]):
                lat.append(clock() - began)
            else:
                errors += 1
            i += concurrency

    began = clock()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    out = _summary(lat, errors, clock() - began)
    out["concurrency"] = concurrency
    return out


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    host, port = cfg["host"], int(cfg["port"])
    if cfg["protocol"] == "grpc":
        driver: Any = GrpcDriver(host, port, cfg["target"], cfg.get("api_key"))
    else:
        conns = int(cfg.get("connections", 64))
        driver = HttpDriver(host, port, cfg["target"], conns, cfg.get("api_key"))
    duration = float(cfg["duration_s"])
    rate = cfg.get("rate")
    n = int(rate * duration) if rate else int(cfg.get("pool", 20_000))
    mix = user_mix(list(cfg.get("users", [])), n, int(cfg.get("seed", 0)))
    payloads = [driver.encode(r) for r in mix]
    try:
        warm = float(cfg.get("warmup_s", 1.0))
        if warm > 0:  # connections, JIT-less caches, the server's first requests: not measured
            await closed_loop(driver, payloads, 4, warm)
        if rate:
            res = await open_loop(driver, payloads, float(rate))
        else:
            res = await closed_loop(driver, payloads, int(cfg.get("concurrency", 32)), duration)
    finally:
        await driver.close()
    res.update(protocol=cfg["protocol"], target=cfg["target"], mode="rate" if rate else "saturate")
    return res


def main() -> None:
    cfg = orjson.loads(sys.argv[1])
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
