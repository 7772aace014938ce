"""Which engines the demo runs on: ``embedded`` (files only, the default) or ``scale``.

A backend mode starts the services it needs, rewrites the project's spec (``engine`` and
``backends`` in feedstack.yaml, where every stage reads them) to use them, says which engines ran
(``engines``, recorded in demo.json and shown in the report) and stops what it started. Modes
compose by parts:

- ``StreamPart``: the event log on Kafka (a local tansu broker the demo starts and stops) and the
  online path (online features, candidate cache) on Redis;
- ``BatchPart``: the offline stages (feature backfill, training rows, candidate build) on Spark
  ``local[2]`` with the same code; the Spark tasks of each region shard write the candidate cache.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from feedstack.core.errors import BackendUnavailable, InputError
from feedstack.core.spec import load_spec, render_spec

MODES = ("embedded", "scale")
STREAM_PARTITIONS = 4
SPARK_MASTER = "local[2]"


class Part(Protocol):
    """One engine family of a mode: start, the spec settings it sets, its engines, stop."""

    def start(self, out: Path) -> None: ...

    def backends(self) -> dict[str, str]: ...

    def settings(self) -> dict[str, str]: ...

    def engines(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


class StreamPart:
    """The event log on Kafka (a local tansu broker, memory storage) and the online path on
    Redis (online features and the candidate cache), under a key prefix of this run."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.prefix = f"fsdemo-{uuid.uuid4().hex[:8]}"
        self.broker: Any = None

    def start(self, out: Path) -> None:
        import redis

        from feedstack.storage.tansu import LocalBroker

        try:
            redis.Redis.from_url(self.redis_url, socket_timeout=3).ping()
        except redis.RedisError as exc:
            msg = f"--backends scale needs Redis at {self.redis_url}: {exc}"
            raise BackendUnavailable(msg) from exc
        self.broker = LocalBroker(log_path=out / "tansu.log").start()

    def backends(self) -> dict[str, str]:
        assert self.broker is not None
        return {
            "event_log": self.broker.url("feedstack-events", STREAM_PARTITIONS),
            "online_features": f"{self.redis_url}?prefix={self.prefix}-features",
            "candidate_cache": f"{self.redis_url}?prefix={self.prefix}-candidates",
        }

    def settings(self) -> dict[str, str]:
        return {}

    def engines(self) -> dict[str, Any]:
        from feedstack.storage.tansu import broker_binary

        return {
            "event_stream": {
                "engine": "kafka protocol (tansu, local, memory storage)",
                "binary": str(broker_binary()),
                "partitions": STREAM_PARTITIONS,
                "workers": "consumer group (feedstack worker run, one task per partition)",
            },
            "online": {"engine": "redis", "prefix": self.prefix},
        }

    def stop(self) -> None:
        """Stop the broker (its topic lived in memory) and delete this run's Redis keys: the
        project's records (measurements, report) stay, the shared Redis keeps nothing."""
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        import redis

        try:
            r = redis.Redis.from_url(self.redis_url, socket_timeout=10)
            # Feast ends its keys with the project name (the prefix, normalized): match the
            # run's random part anywhere.
            keys = list(r.scan_iter(f"*{self.prefix.rsplit('-', 1)[1]}*", count=10_000))
            for i in range(0, len(keys), 10_000):
                r.delete(*keys[i : i + 10_000])
            r.close()
        except redis.RedisError:
            pass  # nothing to clean where nothing could be written


class BatchPart:
    """The batch jobs on Spark (``engine: local[2]``): nothing to start here, the jobs open
    their SparkSession when they run (batch/engine.py)."""

    master = SPARK_MASTER

    def start(self, out: Path) -> None:
        pass

    def backends(self) -> dict[str, str]:
        return {}

    def settings(self) -> dict[str, str]:
        return {"engine": self.master}

    def engines(self) -> dict[str, Any]:
        return {
            "batch": {
                "engine": f"spark {self.master}",
                "jobs": ["feature backfill", "training rows", "candidate build"],
            }
        }

    def stop(self) -> None:
        pass


@dataclass
class Backends:
    """The demo's backend mode: its parts, started together and stopped in reverse."""

    mode: str = "embedded"
    parts: list[Part] = field(default_factory=list)

    @classmethod
    def for_mode(cls, mode: str) -> Backends:
        if mode not in MODES:
            raise InputError(f"--backends {mode!r}: valid: {', '.join(MODES)}")
        return cls(mode, [StreamPart(), BatchPart()] if mode == "scale" else [])

    def start(self, out: Path) -> None:
        started: list[Part] = []
        try:
            for part in self.parts:
                part.start(out)
                started.append(part)
        except BaseException:
            for part in reversed(started):
                part.stop()
            raise

    def apply(self, project: Path) -> dict[str, str]:
        """Point the project's spec at the running services and engines; returns what it set."""
        urls: dict[str, str] = {}
        settings: dict[str, str] = {}
        for part in self.parts:
            urls.update(part.backends())
            settings.update(part.settings())
        if urls or settings:
            spec = load_spec(project)
            backends = spec.backends.model_copy(update=urls)
            spec = spec.model_copy(update={**settings, "backends": backends})
            (project / "feedstack.yaml").write_text(render_spec(spec), encoding="utf-8")
        return {**settings, **urls}

    def engines(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "batch": {"engine": "local (python)"}}
        if not self.parts:
            out["event_stream"] = {"engine": "embedded (sqlite)"}
            out["online"] = {"engine": "embedded (sqlite)"}
        for part in self.parts:
            out.update(part.engines())
        return out

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
