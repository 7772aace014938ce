"""The scale benchmark, batch part: a world of ``users`` (about 10 events per user-day) through
the batch path on each engine: feature backfill from the offline Parquet copy, the ranker's
point-in-time training rows, and the candidate build of every user.

Per engine and world size, one child process runs the three jobs (``batch/jobs.py``, the same
calls as ``feedstack features backfill``, ``features training-rows``, ``candidates build``);
the parent samples the whole process tree every 0.2 s (the child, Spark's JVM and its Python
workers): peak RSS is the peak of the tree's summed RSS, CPU is the tree's user + system time,
so "users per core-second" divides by the cores really used, not the cores assumed.

The catalog is ``ARTICLES_PER_DAY`` articles a day whatever the audience (a newsroom does not
publish more because more people read): every world size scores the same catalog, so the
per-user cost is comparable across steps.

What is not the deployed system, and why: the world is written straight into the offline
store's layout (ingest is measured by ``bench ingest``); the model is trained on a small world
with the same articles (training at 1M users is not this benchmark); online feature rows are
counted, not written (``bench features`` measures the store); candidate lists are encoded and
counted, not stored (1M users x ~47 KB is ~47 GB: more than this machine's Redis should hold).

The largest world within ``limit_gb``: a stepped search, sizes growing x4 from ``users / 16``
up to ``users``, each step a full run; a step whose tree passes the limit is killed at once and
ends the search for that engine; a step predicted (linear in users from the last two) to end
past the time budget is not started. The answer is the largest size that ran under the limit,
with the size the last two steps' slope projects for the limit (labeled projected, not run: the
JVM's heap grows lazily up to ``spark.driver_memory``, so small steps overstate Spark's slope).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ARTICLES_PER_DAY = 2_000  # a large newsroom's daily output; it does not grow with the audience

_CLK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

_JOBS = """
import time, orjson, shutil
from pathlib import Path
from feedstack.batch import jobs
from feedstack.batch.engine import Engine, stop_sessions
from feedstack.bench.batch_scale import CountingFolderSink, NullCache
from feedstack.features.feast_repo import FeastRepo
project = Path(ARGS["project"])
engine = Engine(ARGS["engine"], driver_memory=ARGS["driver_memory"])
def mark(name):
    print(orjson.dumps({"mark": name, "t": time.time()}).decode(), flush=True)
out = {}
mark("start")
if engine.is_spark:
    engine.session()
mark("backfill")
root = FeastRepo.from_spec(project).offline_root
shutil.rmtree(root, ignore_errors=True)
out["backfill"] = jobs.backfill(project, engine, CountingFolderSink(root), source="parquet",
                                offline_root=root)
mark("training_rows")
out["training_rows"] = jobs.training_rows(project, engine, project / "data" / "training" / "rows")
mark("candidates")
cache = NullCache()
if engine.is_spark:
    from feedstack.batch.candidates import spark_candidate_build
    out["candidates"] = spark_candidate_build(engine, project, cache=cache, discard=True)
else:
    out["candidates"] = jobs.candidate_build(project, engine, cache=cache)
mark("end")
stop_sessions()
RESULT = out
"""


class CountingFolderSink:
    """Offline rows to the folder (the training rows read them); online rows counted only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.online_rows = 0

    def write_offline(self, rows: Any) -> None:
        from feedstack.features.sink import write_rows_folder

        write_rows_folder(self.root, rows)

    def write_online(self, rows: Any) -> None:
        self.online_rows += sum(len(r) for r in rows)


class NullCache:
    """A candidate cache that encodes every list (the cost is real) and keeps nothing."""

    url = "null://"

    def __init__(self) -> None:
        self.n = 0

    def get(self, user_id: str) -> None:
        return None

    def put_many(self, lists: Any) -> int:
        from feedstack.storage.candidate_cache import encode

        self.n += len(lists)
        return sum(len(encode(c)) for c in lists.values())

    def count(self) -> int:
        return self.n

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------- process tree
def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _usage(pid: int) -> tuple[int, float]:
    """(RSS bytes, user + system CPU seconds) of one process, (0, 0) if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0, 0.0
    cpu = (int(fields[11]) + int(fields[12])) / _CLK
    return int(fields[21]) * _PAGE, cpu


class TreeSampler:
    """Samples a process tree: peak summed RSS, and CPU per process (the largest seen)."""

    def __init__(self, pid: int, limit_bytes: float, every_s: float = 0.2) -> None:
        self.pid = pid
        self.limit = limit_bytes
        self.every = every_s
        self.peak = 0
        self.cpu: dict[int, float] = {}
        self.series: list[tuple[float, float]] = []  # (time, tree CPU seconds so far)
        self.over = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for pid in _tree(self.pid):
                r, c = _usage(pid)
                rss += r
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), c)
            self.peak = max(self.peak, rss)
            self.series.append((time.time(), sum(self.cpu.values())))
            if rss > self.limit and not self.over:
                self.over = True
                os.killpg(self.pid, signal.SIGKILL)  # the child leads its own group
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_between(self, t0: float, t1: float) -> float:
        def at(t: float) -> float:
            before = [c for s, c in self.series if s <= t]
            return before[-1] if before else 0.0

        return max(0.0, at(t1) - at(t0))


def run_tree(body: str, args: Any, limit_bytes: float) -> dict[str, Any]:
    """Run a benchmark body (see bench/child.py) in a new process group, sampling its tree."""
    from feedstack.bench.child import _EPILOGUE, _PRELUDE

    began = time.time()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PRELUDE + body + _EPILOGUE, orjson.dumps(args).decode()],
            stdout=subprocess.PIPE,
            stderr=devnull,
            start_new_session=True,
        )
        sampler = TreeSampler(proc.pid, limit_bytes).start()
        assert proc.stdout is not None
        marks: dict[str, float] = {}
        doc: dict[str, Any] = {}
        for line in proc.stdout:
            d = orjson.loads(line)
            if "mark" in d:
                marks[d["mark"]] = d["t"]
            else:
                doc = d
        proc.wait()
        sampler.stop()
    return {
        "ok": proc.returncode == 0 and not sampler.over,
        "over_limit": sampler.over,
        "exit": proc.returncode,
        "result": doc.get("result"),
        "wall_s": round(time.time() - began, 1),
        "peak_rss_gb": round(sampler.peak / 2**30, 2),
        "marks": marks,
        "sampler": sampler,
    }


# ----------------------------------------------------------------------------- the world
def articles_for(days: float) -> int:
    return max(1, round(ARTICLES_PER_DAY * days))


def prepare_world(workdir: Path, users: int, days: float, seed: int) -> Path:
    """A project whose offline store holds the world's events (cached in ``workdir``)."""
    from feedstack.bench.child import run_child
    from feedstack.core.spec import write_default_spec

    project = workdir / f"world-u{users}-d{days:g}-s{seed}"
    done = project / ".ready"
    if done.exists():
        return project
    shutil.rmtree(project, ignore_errors=True)
    args = {"users": users, "articles": articles_for(days), "days": days, "seed": seed}
    body = (
        "from pathlib import Path\nfrom feedstack.world import WorldConfig, write_world\n"
        "out = Path(ARGS.pop('out'))\n"
        "RESULT = write_world(WorldConfig(**ARGS), out, 'parquet')\n"
    )
    run_child(body, {**args, "out": str(project / "world")})
    write_default_spec(project)
    _to_offline_store(project / "world" / "events.parquet", project / "data" / "offline")
    (project / "world" / "events.parquet").unlink()
    done.write_text("ok", encoding="utf-8")
    return project


def _to_offline_store(events: Path, offline: Path) -> None:
    """The world's events in the offline store's layout: by date, with their log offset."""
    from feedstack.storage.arrow_events import write_parquet_atomic

    out = offline / "events"
    part = seq = 0
    for batch in pq.ParquetFile(events).iter_batches(batch_size=500_000):
        table = pa.Table.from_batches([batch])
        offsets = pa.array([str(i) for i in range(seq + 1, seq + 1 + table.num_rows)])
        table = table.append_column("log_offset", offsets)
        seq += table.num_rows
        dates = pc.strftime(table["event_time"], format="%Y-%m-%d")
        for date in sorted(pc.unique(dates).to_pylist()):
            part += 1
            path = out / f"date={date}" / f"part-{part:08d}.parquet"
            write_parquet_atomic(table.filter(pc.equal(dates, date)), path)
    (out / "_manifest.json").write_bytes(orjson.dumps({"offset": str(seq), "parts": part}))


def prepare_model(workdir: Path, days: float, seed: int, model_users: int) -> Path:
    """A model trained on a small world with the same articles (the catalog depends on the
    article count, days and seed, not on the users)."""
    from feedstack.bench.child import run_child

    articles = articles_for(days)
    small = workdir / f"model-a{articles}-d{days:g}-s{seed}"
    models = small / "models"
    if (small / ".ready").exists():
        return models
    shutil.rmtree(small, ignore_errors=True)
    body = """
from pathlib import Path
from feedstack.core.spec import load_spec, write_default_spec
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import read_jsonl
from feedstack.train.project import train_project
from feedstack.train.slates import RankerSize
from feedstack.world import WorldConfig, write_world
root = Path(ARGS["root"])
write_world(WorldConfig(users=ARGS["users"], articles=ARGS["articles"], days=ARGS["days"],
                        seed=ARGS["seed"]), root / "world")
write_default_spec(root / "p")
ing = Ingestor.from_spec(load_spec(root / "p"), root / "p")
ing.ingest(read_jsonl(root / "world" / "events.jsonl"))
ing.close()
hours = ARGS["days"] * 8.0
train_project(root / "p", warmup_hours=hours, eval_hours=hours,
              sizes=(RankerSize(30, 7),), repeats=20)
RESULT = None
"""
    run_child(
        body,
        {
            "root": str(small),
            "users": model_users,
            "articles": articles,
            "days": days,
            "seed": seed,
        },
    )
    shutil.move(str(small / "p" / "models"), str(models))
    shutil.rmtree(small / "p", ignore_errors=True)
    shutil.rmtree(small / "world", ignore_errors=True)
    (small / ".ready").write_text("ok", encoding="utf-8")
    return models


# ---------------------------------------------------------------------------- one run
def run_engine(
    project: Path, engine: str, limit_gb: float, driver_memory: str = "8g"
) -> dict[str, Any]:
    """The three jobs on ``engine`` over ``project`` in one child; stage times, CPU, peak RSS."""
    shutil.rmtree(project / "data" / "training", ignore_errors=True)
    run = run_tree(
        _JOBS,
        {"project": str(project), "engine": engine, "driver_memory": driver_memory},
        limit_gb * 2**30,
    )
    sampler: TreeSampler = run.pop("sampler")
    marks = run.pop("marks")
    res = run.pop("result") or {}
    out: dict[str, Any] = {"engine": engine, **run}
    order = ["start", "backfill", "training_rows", "candidates", "end"]
    for a, b in itertools.pairwise(order):
        if a in marks and b in marks:
            name = "session" if a == "start" else a
            out[f"{name}_s"] = round(marks[b] - marks[a], 1)
            out[f"{name}_cpu_s"] = round(sampler.cpu_between(marks[a], marks[b]), 1)
    if res:
        back, rows, cands = res["backfill"], res["training_rows"], res["candidates"]
        out["events"] = back["events"]
        out["snapshot_rows"] = back["snapshot_rows"]
        out["training_rows"] = rows["rows"]
        out["users"] = cands["users"]
        out["candidates_per_user"] = cands["candidates_per_user"]
        cpu = out.get("candidates_cpu_s") or 0.0
        if cpu > 0:
            out["candidate_users_per_core_s"] = round(cands["users"] / cpu, 1)
            out["candidate_ms_per_user_core"] = round(cpu / cands["users"] * 1000, 3)
        if out.get("backfill_cpu_s"):
            out["backfill_events_per_core_s"] = round(back["events"] / out["backfill_cpu_s"], 1)
    return out


def run_batch_scale(
    users: int = 1_000_000,
    *,
    days: float = 1.0,
    engines: tuple[str, ...] = ("local", "local[2]"),
    limit_gb: float = 20.0,
    steps: int = 3,
    budget_s: float = 4 * 3600.0,
    seed: int = 0,
    model_users: int = 5_000,
    workdir: Path = Path("bench-out") / "scale",
    keep: bool = True,
    say: Any = None,
) -> dict[str, Any]:
    """Stepped sizes ``users / 4**k`` (k = steps-1 .. 0) on every engine; see module doc."""
    began = time.time()
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({max(1_000, users // 4**k) for k in range(steps)})
    models = prepare_model(workdir, days, seed, model_users)
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    for size in sizes:
        project = prepare_world(workdir, size, days, seed)
        if not (project / "models").exists():
            shutil.copytree(models, project / "models")
        for engine in engines:
            done = runs[engine]
            if done and not done[-1]["ok"]:
                continue  # a smaller world already failed or passed the limit
            if _predicted_time(done, size) > budget_s - (time.time() - began):
                continue
            if say is not None:
                say(f"{engine}: {size:,} users")
            r = run_engine(project, engine, limit_gb)
            r["world_users"] = size
            done.append(r)
        if not keep and size != users:
            shutil.rmtree(project, ignore_errors=True)
    return {
        "users": users,
        "days": days,
        "limit_gb": limit_gb,
        "sizes": sizes,
        "runs": {e: r for e, r in runs.items()},
        "largest_within_limit": {e: _largest(r, limit_gb) for e, r in runs.items()},
        "seconds": round(time.time() - began, 1),
    }


def _predicted_time(done: list[dict[str, Any]], size: int) -> float:
    return _project(done, "wall_s", size) if done else 0.0


def _project(done: list[dict[str, Any]], key: str, size: float) -> float:
    """``key`` at ``size``, linear through the last two runs (or proportional to one)."""
    pts = [(float(r["world_users"]), float(r[key])) for r in done if r.get("ok")]
    if not pts:
        return 0.0
    if len(pts) == 1:
        return pts[0][1] * size / pts[0][0]
    (x0, y0), (x1, y1) = pts[-2], pts[-1]
    slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
    return y1 + slope * (size - x1)


def _largest(done: list[dict[str, Any]], limit_gb: float) -> dict[str, Any]:
    ok = [r for r in done if r.get("ok")]
    out: dict[str, Any] = {"ran_users": max((r["world_users"] for r in ok), default=0)}
    if len(ok) >= 2:
        (x0, y0), (x1, y1) = ((float(r["world_users"]), float(r["peak_rss_gb"])) for r in ok[-2:])
        slope = (y1 - y0) / (x1 - x0) if x1 != x0 else 0.0
        if slope > 0:
            out["projected_users"] = int(x1 + (limit_gb - y1) / slope)
            out["gb_per_million_users"] = round(slope * 1e6, 2)
    out["how"] = (
        "largest size that ran under the limit; projected = linear in users through the last "
        "two runs' peak RSS (not run)"
    )
    return out
