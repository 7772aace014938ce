"""``feedstack bench serve-inproc``: the feed request path measured in-process (no HTTP).

Latency per request (500 candidates, the project's selected ranker, k = 20) and per stage, and
the memory of one serving process holding the model and the item features of ``--articles``
articles, in a fresh child process (bench/serve_inproc.py). Recorded in measurements/.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    project_dir,
    record_measurement,
)


def serve_inproc(
    articles: int = typer.Option(100_000, "--articles", min=100, help="Articles in memory."),
    users: int = typer.Option(1_000, "--users", min=1, help="Users with candidate lists."),
    requests: int = typer.Option(3_000, "--requests", min=10, help="Timed feed requests."),
    candidates: int = typer.Option(500, "--candidates", min=1, help="Candidates per user."),
    redis: bool = typer.Option(False, "--redis", help="Candidate cache in Redis ($REDIS_URL)."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Per-request latency (p50/p99) and process memory of the request path, in-process."""
    from feedstack.bench.serve_inproc import run_serve_inproc_bench

    with cli_errors():
        root = project_dir(project)
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0") if redis else "memory://"
        result = run_serve_inproc_bench(root, articles, users, requests, candidates, url)
        record_measurement("bench-request-path", result, root, as_json)
