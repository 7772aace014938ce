"""Serve-ability on a public interaction log: the Gowalla split as a user would run it.

``feedstack init`` -> ``feedstack ingest train.txt --adapter lightgcn`` -> ``feedstack train``
(the interactions recipe) -> ``feedstack candidates build`` -> ``feedstack serve``, then the
serving benchmark (bench/serve.py: every worker, 10 % of requests posting events) at
``rate`` requests/s. Each step's wall time is recorded.

Bounded in time: ``users`` keeps the first N lines of ``train.txt`` (a slice of the users with
their whole histories; the catalog is what they clicked), written to the work folder; the data
itself is read where it lies and never copied into the repository.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedstack.bench.serve import run_serve_bench
from feedstack.core.errors import InputError
from feedstack.core.spec import load_spec, write_default_spec
from feedstack.ingest.adapters import open_adapter
from feedstack.ingest.pipeline import Ingestor
from feedstack.train.candidate_cache import build_candidate_cache
from feedstack.train.project import train_project

P99_TARGET_MS = 15.0  # the serving target at 300 requests/s (cli/bench_cmd.py TARGETS "serve")


def slice_users(source: Path, target: Path, users: int | None) -> int:
    """The first ``users`` lines of a LightGCN file (all when None); returns the line count."""
    if not source.is_file():
        raise InputError(f"{source}: no such file (set FEEDSTACK_GOWALLA to the data folder)")
    n = 0
    with source.open("r", encoding="utf-8") as src, target.open("w", encoding="utf-8") as out:
        for line in src:
            if users is not None and n >= users:
                break
            if line.strip():
                out.write(line)
                n += 1
    return n


def run_gowalla_serve_bench(
    train_file: Path,
    work: Path,
    *,
    users: int | None = 10_000,
    rate: float = 300.0,
    duration_s: float = 20.0,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build a fresh project under ``work`` from ``train_file`` and measure its feed API."""
    say = say or (lambda _m: None)
    project = work / "gowalla-serve"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    sliced = project / "interactions.txt"
    n_users = slice_users(train_file, sliced, users)
    write_default_spec(project)
    spec = load_spec(project)

    say(f"ingest {n_users} users' interactions")
    t = time.perf_counter()
    ingestor = Ingestor.from_spec(spec, project)
    try:
        report = ingestor.ingest(open_adapter("lightgcn", [sliced], {}))
    finally:
        ingestor.close()
    seconds["ingest"] = time.perf_counter() - t
    if report.rejected:
        raise InputError(f"{sliced}: {report.rejected} records rejected ({report.errors[:1]})")

    say("train (interactions recipe)")
    t = time.perf_counter()
    trained = train_project(project, recipe="interactions", repeats=100, say=say)
    seconds["train"] = time.perf_counter() - t

    say("candidates build")
    t = time.perf_counter()
    built = build_candidate_cache(project)
    seconds["candidates"] = time.perf_counter() - t

    say(f"serve at {rate:g} requests/s for {duration_s:g} s")
    t = time.perf_counter()
    served = run_serve_bench(project, protocol="http", rate=rate, duration_s=duration_s)
    seconds["serve_bench"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - began
    return {
        "data": {"file": str(train_file), "users": n_users, "interactions": report.accepted},
        "model_version": trained["version"],
        "train": {
            "selected": trained["selected"],
            "selection": trained["selection"],
            "ranker_used": trained["ranker_used"],
        },
        "candidates": {k: built[k] for k in ("users", "candidates_per_user", "bytes_per_user")},
        "rate": rate,
        "duration_s": duration_s,
        "p50_ms": served["p50_ms"],
        "p99_ms": served["p99_ms"],
        "rps": served["rps"],
        "errors": served["errors"],
        "floor_p99_ms_at_rate": served["floor_p99_ms_at_rate"],
        "workers": served["workers"],
        "serve": served,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "target": {"p99_ms": P99_TARGET_MS},
        "meets": {"p99_ms": served["p99_ms"] <= P99_TARGET_MS and served["errors"] == 0},
    }
