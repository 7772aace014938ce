"""kill -9 a feature worker mid-stream, restart it, and end with exactly the online and offline
rows of a single uninterrupted pass: nothing counted twice, nothing lost.

The worker runs in a subprocess with a file-backed sink (JSON lines, fsynced per write; the
in-memory sink cannot outlive a process). The first kill lands deterministically between a sink
write and the checkpoint that would cover it (the worker waits for a go-ahead after each batch);
the second lands wherever the free-running worker happens to be.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from typer.testing import CliRunner

from feedstack.core.spec import load_spec
from feedstack.features.backfill import backfill_log
from feedstack.features.checkpoint import load_checkpoint
from feedstack.features.sink import MemorySink
from feedstack.storage.eventlog import open_event_log
from tests.unit.test_worker import fill, simulated_day

WORKER = """
import os, sys
from pathlib import Path
import orjson
from feedstack.core.spec import load_spec
from feedstack.features.worker import FeatureWorker, WorkerConfig
from feedstack.storage.eventlog import open_event_log

class FileSink:
    def __init__(self, folder):
        self.files = {k: self._open(folder / f"{k}.jsonl") for k in ("online", "offline")}

    @staticmethod
    def _open(path):
        if path.exists():  # drop a line torn by the previous kill
            data = path.read_bytes()
            path.write_bytes(data[: data.rfind(b"\\n") + 1])
        return path.open("ab")

    def _write(self, kind, rows):
        f = self.files[kind]
        f.write(b"".join(orjson.dumps([fr.view, r]) + b"\\n" for fr in rows for r in fr.records()))
        f.flush()
        os.fsync(f.fileno())

    def write_online(self, rows):
        self._write("online", rows)

    def write_offline(self, rows):
        self._write("offline", rows)

project, folder, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
log = open_event_log(load_spec(project).backends.event_log, project)
config = WorkerConfig(max_batch=400, max_wait_s=0.0, checkpoint_every_events=1_500)
worker = FeatureWorker.open(log, FileSink(folder), folder / "ckpt.npz", config)

def on_batch(rep):
    print(f"BATCH {rep.offset} {worker.checkpointed_offset}", flush=True)
    if mode == "step":
        sys.stdin.readline()  # the parent decides: go on, or kill -9 right here

worker.run(once=True, on_batch=on_batch)
print("DONE", flush=True)
"""


def _start(project: Path, folder: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(project), str(folder), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the worker finished before it could be killed"
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            f.close()


def _read_sink(folder: Path) -> tuple[dict[str, Any], dict[tuple[str, str, float], Any]]:
    """What a store with the sink port's semantics holds: online newest as-of wins (ties: the
    later write), offline one row per (view, key, as-of)."""
    online: dict[str, dict[str, Any]] = {}
    for line in (folder / "online.jsonl").read_bytes().splitlines():
        view, rec = orjson.loads(line)
        old = online.setdefault(view, {}).get(rec["key"])
        if old is None or old["as_of_s"] <= rec["as_of_s"]:
            online[view][rec["key"]] = rec
    offline = {}
    for line in (folder / "offline.jsonl").read_bytes().splitlines():
        view, rec = orjson.loads(line)
        offline[(view, rec["key"], rec["as_of_s"])] = rec
    return online, offline


def test_kill_9_mid_stream_then_restart_equals_one_uninterrupted_pass(
    project: Path, tmp_path: Path
) -> None:
    log = open_event_log(load_spec(project).backends.event_log, project)
    fill(log, simulated_day())
    folder = tmp_path / "sink"
    folder.mkdir()

    # 1. Killed right after a batch's sink write, before the checkpoint that would cover it.
    proc = _start(project, folder, "step")
    assert proc.stdout is not None and proc.stdin is not None
    batches_after_checkpoint = 0
    for line in proc.stdout:
        _, offset, checkpointed = line.split()
        if checkpointed != "None" and offset != checkpointed:
            batches_after_checkpoint += 1
        if batches_after_checkpoint == 2:
            break
        proc.stdin.write("\n")
        proc.stdin.flush()
    _kill(proc)
    _, at = load_checkpoint(folder / "ckpt.npz")
    assert at == checkpointed and int(at) < int(offset)  # rows past the checkpoint were written

    # 2. Killed wherever it is (sink write, aggregation, checkpoint write ...).
    proc = _start(project, folder, "run")
    assert proc.stdout is not None
    seen = [line for _, line in zip(range(6), proc.stdout, strict=False)]
    assert all(line.startswith("BATCH") for line in seen)
    _kill(proc)

    # 3. Restarted to the end.
    proc = _start(project, folder, "run")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().endswith("DONE")

    reference = MemorySink()
    backfill_log(log, reference)
    online, offline = _read_sink(folder)
    assert online == reference.online  # exact: every view, key and value
    assert offline == {(v, r["key"], r["as_of_s"]): r for v, r in reference.offline}
    log.close()


def test_worker_and_backfill_commands(project: Path) -> None:
    from feedstack.cli import worker_cmd

    log = open_event_log(load_spec(project).backends.event_log, project)
    fill(log, simulated_day(2_000, users=40))
    log.close()
    # Registered as the lead will in cli/main.py.
    root = typer.Typer()
    root.add_typer(worker_cmd.app, name="worker")
    features = typer.Typer()
    features.command("backfill")(worker_cmd.backfill)
    root.add_typer(features, name="features")
    runner = CliRunner()
    run = ["worker", "run", "-p", str(project), "--once", "--json", "--sink", "memory"]
    res = runner.invoke(root, run)
    assert res.exit_code == 0, res.output
    first = orjson.loads(res.stdout)
    assert first["events"] == 2_000 and first["offset"] == "2000"
    assert worker_cmd.checkpoint_path(project).exists()
    res = runner.invoke(root, run)
    assert orjson.loads(res.stdout)["events"] == 0  # resumed from its checkpoint

    backfill = ["features", "backfill", "-p", str(project), "--json", "--no-checkpoint"]
    backfill += ["--sink", "memory"]
    res = runner.invoke(root, backfill)
    assert res.exit_code == 0, res.output
    assert orjson.loads(res.stdout)["events"] == 2_000
    res = runner.invoke(root, ["features", "backfill", "-p", str(project), "--from", "nowhere"])
    assert res.exit_code == 2
