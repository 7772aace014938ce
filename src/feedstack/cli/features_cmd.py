"""``feedstack features ...``: the Feast repo generated from the feature definitions.

apply        generate ``<project>/data/feast`` from definitions.py and run ``feast apply``
materialize  ``feast materialize-incremental``: offline Parquet rows -> the online store
serve        the real ``feast serve`` (HTTP) on the generated repo
status       what is on disk: generated from the current definitions? applied? rows per view
training-rows  the ranker's point-in-time training rows (Parquet), on the local engine or Spark

Backends: ``--online-url`` / ``--offline-url``, else the spec's ``backends.online_features`` /
``backends.offline_features`` once it has them, else the embedded SQLite + Parquet files.
Feast runs as a subprocess (``python -m feast.cli.cli``): it takes seconds to import.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from feedstack.cli.common import (
    EngineOption,
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
)
from feedstack.core.errors import BackendUnavailable, InputError

if TYPE_CHECKING:
    from feedstack.features.feast_repo import FeastRepo

app = typer.Typer(
    help="Feast, the feature store of record: apply, materialize, serve, status.",
    no_args_is_help=True,
)

OnlineUrlOption = typer.Option(
    None,
    "--online-url",
    help="Online store: sqlite://PATH or redis://HOST:PORT/DB?prefix=NAME "
    "(default: the spec's backends.online_features, else sqlite://data/feast/online.db).",
)
OfflineUrlOption = typer.Option(
    None,
    "--offline-url",
    help="Folder of the offline Parquet files, file://PATH (default: file://data/feast/offline).",
)


def _repo(project: Path | None, online_url: str | None, offline_url: str | None) -> FeastRepo:
    from feedstack.features.feast_repo import FeastRepo  # pyarrow: not for `--help`

    return FeastRepo.from_spec(project_dir(project), online_url, offline_url)


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        console.print_json(data=result)


@app.command("apply")
def apply(
    project: Path | None = ProjectOption,
    online_url: str | None = OnlineUrlOption,
    offline_url: str | None = OfflineUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate the Feast repo from the feature definitions and run feast apply on it."""
    from feedstack.features.feast_cli import apply_repo

    with cli_errors():
        repo = _repo(project, online_url, offline_url)
        t = time.perf_counter()
        result = apply_repo(repo)
        result["seconds"] = round(time.perf_counter() - t, 2)
    _show(result, as_json)


@app.command("materialize")
def materialize(
    end: str | None = typer.Option(
        None, "--end", help="Materialize up to this ISO 8601 time (UTC if no offset; default now)."
    ),
    project: Path | None = ProjectOption,
    online_url: str | None = OnlineUrlOption,
    offline_url: str | None = OfflineUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Copy new offline rows into the online store (feast materialize-incremental).

    Each view continues from its last run; its first run starts one ttl before --end.
    """
    from feedstack.features.feast_cli import feast_cli

    with cli_errors():
        repo = _repo(project, online_url, offline_url)
        if not repo.registry_path.exists():
            raise InputError(f"{repo.path} is not applied; run `feedstack features apply` first")
        until = _parse_time(end) if end else datetime.now(UTC)
        t = time.perf_counter()
        out = feast_cli(repo, "materialize-incremental", until.isoformat())
        result = {
            "repo": str(repo.path),
            "end": until.isoformat(),
            "seconds": round(time.perf_counter() - t, 2),
            "feast_output": [line for line in out.strip().splitlines() if line.strip()],
        }
    _show(result, as_json)


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(6566, "--port", min=1, max=65535, help="HTTP port."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    project: Path | None = ProjectOption,
    online_url: str | None = OnlineUrlOption,
    offline_url: str | None = OfflineUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Run the real feast serve (HTTP, POST /get-online-features) until interrupted.

    With --json, prints {"url", "command"} on stdout before the server starts.
    """
    with cli_errors():
        repo = _repo(project, online_url, offline_url)
        if not repo.registry_path.exists():
            raise InputError(f"{repo.path} is not applied; run `feedstack features apply` first")
        cmd = [sys.executable, "-m", "feast.cli.cli", "-c", str(repo.path), "serve"]
        cmd += ["--host", host, "--port", str(port), "--workers", str(workers)]
        info = {"url": f"http://{host}:{port}", "command": cmd}
        if as_json:
            emit_json(info)
        else:
            console.print(f"feast serve on {info['url']} (repo {repo.path})")
        sys.stdout.flush()
        sys.stderr.flush()
        # Become feast serve (exec, not a child): signals from a supervisor reach the server
        # itself and no orphan is left behind.
        try:
            os.execv(sys.executable, cmd)
        except OSError as exc:
            raise BackendUnavailable(f"cannot start feast serve: {exc}") from exc


@app.command("status")
def status(
    project: Path | None = ProjectOption,
    online_url: str | None = OnlineUrlOption,
    offline_url: str | None = OfflineUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Show the repo on disk: stale or current, applied, offline files and rows per view.

    Reads files only (no feast import): generated from the current definitions or stale,
    applied (a registry exists), and the Parquet files and rows of each view.
    """
    from feedstack.features.feast_repo import repo_status

    with cli_errors():
        result = repo_status(_repo(project, online_url, offline_url))
    _show(result, as_json)


@app.command("training-rows")
def training_rows(
    project: Path | None = ProjectOption,
    out: Path | None = typer.Option(
        None, "--out", help="Parquet folder to write (default: PROJECT/data/training/rows)."
    ),
    engine: str | None = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Every logged impression x shown item with its labels and the features as they were at
    the impression (point-in-time ASOF joins over the offline feature rows).

    Needs the offline feature rows: run `feedstack features backfill` first."""
    from feedstack.batch import jobs
    from feedstack.batch.engine import Engine
    from feedstack.core.spec import load_spec

    with cli_errors():
        root = project_dir(project)
        eng = Engine.from_spec(load_spec(root), engine)
        result = jobs.training_rows(root, eng, out)
    _show(result, as_json)


def _parse_time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--end must be an ISO 8601 time, got {value!r}") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
