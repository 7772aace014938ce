"""Write a world to disk: ``events.jsonl`` or ``events.parquet``, then ``world.json``.

Events stream from the simulation to a temporary file batch by batch (memory stays bounded by one
step's events, whatever the world's size); the file is fsynced and renamed into place only when
complete, so a reader never sees half a world. ``world.json`` (config, seed, summary) is written
the same way, last: its presence means the events file next to it is whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from feedstack import __version__
from feedstack.core.errors import InputError
from feedstack.storage.arrow_events import EVENT_SCHEMA
from feedstack.world.config import WorldConfig
from feedstack.world.encoding import LineEncoder, TableEncoder
from feedstack.world.newsworld import NewsWorld
from feedstack.world.simulate import Simulation
from feedstack.world.tally import Tally
from feedstack.world.timeline import to_us

Format = Literal["jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "parquet")
WORLD_FILE = "world.json"
_ROW_GROUP = 262_144  # Parquet rows per row group: big enough to compress, small to stream
# Rows encoded at once: the first step announces every existing user (1M rows for 1M users) and
# its text would otherwise be held several times over (lines, joined text, bytes).
_PIECE = 65_536
Progress = Callable[[int, int], None]  # (steps done, steps in total)


def write_world(
    config: WorldConfig,
    out_dir: Path,
    fmt: str = "jsonl",
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate the world and write it; returns the summary that ``world.json`` also holds.

    ``now`` (injected; the CLI passes the wall clock) rejects a world that would end in the
    future: its events would be refused by ingest as clock skew.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if now is not None and config.end > now:
        raise InputError(
            f"--start/--days: the world would end at {config.end.isoformat()}, after now "
            f"({now.isoformat()}); event times must be in the past"
        )
    began = time.perf_counter()
    world = NewsWorld(config)
    sim = Simulation(world)
    tally = Tally(config.users, config.clicks.k, to_us(config.start))
    path = out_dir / f"events.{fmt}"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if fmt == "jsonl":
            _write_jsonl(world, sim, tally, tmp, progress)
        else:
            _write_parquet(world, sim, tally, tmp, progress)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    summary: dict[str, Any] = {
        "users": config.users,
        "articles": config.articles,
        "days": config.days,
        "seed": config.seed,
        "format": fmt,
        "path": str(path),
        "requests": sim.requests,
        **tally.summary(config.users, config.days),
        "seconds": round(time.perf_counter() - began, 3),
    }
    doc = {
        "feedstack_version": __version__,
        "config": config.model_dump(mode="json"),
        "summary": summary,
    }
    _write_atomic(out_dir / WORLD_FILE, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    summary["world"] = str(out_dir / WORLD_FILE)
    return summary


def load_world_config(path: Path) -> WorldConfig:
    """The config stored in a ``world.json`` (or its folder): rebuild with ``NewsWorld(...)``."""
    if path.is_dir():
        path = path / WORLD_FILE
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputError(f"cannot read world file {path}: {exc}") from None
    return WorldConfig.model_validate(doc["config"])


def _write_jsonl(
    world: NewsWorld, sim: Simulation, tally: Tally, tmp: Path, progress: Progress | None
) -> None:
    encoder, written = LineEncoder(world), 0
    with tmp.open("wb") as f:
        for step, batch in enumerate(sim.batches(), start=1):
            for piece in batch.pieces(_PIECE):
                f.write(encoder.encode(piece, written))
                written += len(piece)
            tally.add(batch)
            if progress is not None:
                progress(step, sim.n_steps)
        _sync(f)


def _write_parquet(
    world: NewsWorld, sim: Simulation, tally: Tally, tmp: Path, progress: Progress | None
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    encoder, written, pending = TableEncoder(world), 0, []
    with pq.ParquetWriter(tmp, EVENT_SCHEMA) as out:
        for step, batch in enumerate(sim.batches(), start=1):
            for piece in batch.pieces(_PIECE):
                pending.append(encoder.encode(piece, written))
                written += len(piece)
                if sum(t.num_rows for t in pending) >= _ROW_GROUP:
                    out.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP)
                    pending = []
            tally.add(batch)
            if progress is not None:
                progress(step, sim.n_steps)
        if pending:
            out.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        _sync(f)
    tmp.replace(path)


def _sync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())
