"""Which backends a demo run uses (``feedstack demo --backends NAME``).

- ``embedded`` (default): everything in this process and local files (SQLite, Parquet).
- ``scale``: the offline stages (feature backfill, training rows, candidate build) on Spark
  ``local[2]`` with the same code; the candidate cache in Redis (written by the Spark tasks of
  each region shard) when a Redis server answers.

``apply(project)`` writes the choice into the project's ``feedstack.yaml`` (the spec is where
every stage reads its backends), and ``describe()`` is what demo.json reports as "engines".
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedstack.core.errors import InputError
from feedstack.core.spec import load_spec, render_spec

BACKENDS = ("embedded", "scale")
SPARK_MASTER = "local[2]"


@dataclass(frozen=True)
class DemoBackends:
    name: str = "embedded"

    @classmethod
    def named(cls, name: str) -> DemoBackends:
        if name not in BACKENDS:
            raise InputError(f"--backends must be one of {', '.join(BACKENDS)}, got {name!r}")
        return cls(name)

    @property
    def batch_engine(self) -> str:
        return SPARK_MASTER if self.name == "scale" else "local"

    def apply(self, project: Path) -> dict[str, Any]:
        """Set the project's spec for these backends; returns what changed."""
        if self.name == "embedded":
            return {}
        spec = load_spec(project)
        changes: dict[str, Any] = {"engine": self.batch_engine}
        redis_url = _redis_url()
        backends = spec.backends
        if redis_url is not None:
            prefix = f"demo-{secrets.token_hex(4)}"
            cache = f"{redis_url}?prefix={prefix}"
            backends = backends.model_copy(update={"candidate_cache": cache})
            changes["candidate_cache"] = cache
        spec = spec.model_copy(update={"engine": self.batch_engine, "backends": backends})
        (project / "feedstack.yaml").write_text(render_spec(spec), encoding="utf-8")
        return changes

    def describe(self, project: Path) -> dict[str, Any]:
        spec = load_spec(project)
        return {
            "backends": self.name,
            "batch_engine": spec.engine,
            "event_log": spec.backends.event_log.split("://", 1)[0],
            "candidate_cache": spec.backends.candidate_cache.split("://", 1)[0],
            "online_features": spec.backends.online_features.split("://", 1)[0],
        }


def _redis_url() -> str | None:
    """The Redis server to use, if one answers (REDIS_URL, default 127.0.0.1:6379/0)."""
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError:
        return None
    return url
