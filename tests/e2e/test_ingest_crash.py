"""kill -9 mid-ingest loses no acknowledged event and leaves nothing half-written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from feedstack.core.spec import load_spec
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import read_jsonl
from tests.factories import click, jsonl

WORKER = """
import sys
from pathlib import Path
from feedstack.core.spec import load_spec
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import read_jsonl

project, path = Path(sys.argv[1]), Path(sys.argv[2])
ing = Ingestor.from_spec(load_spec(project), project)
total = 0
def ack(result):
    global total
    total += result.accepted
    print(f"ACK {total}", flush=True)
ing.ingest(read_jsonl(path), on_ack=ack)
print("DONE", flush=True)
"""

BATCH = 500
N = 400_000


def test_kill_9_mid_ingest_loses_no_acknowledged_event(project: Path, tmp_path: Path) -> None:
    spec_path = project / "feedstack.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["ingest"]["batch_size"] = BATCH
    spec_path.write_text(yaml.safe_dump(spec))
    data = tmp_path / "events.jsonl"
    data.write_bytes(jsonl([click(i, user=f"u{i % 97}", article=f"a{i % 13}") for i in range(N)]))

    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(project), str(data)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked = 0
    for line in proc.stdout:
        assert line.startswith("ACK"), line
        acked = int(line.split()[1])
        if acked >= 20 * BATCH:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the worker finished before it could be killed"

    db_path = project / "data" / "events.sqlite"
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ids = [row[0] for row in db.execute("SELECT event_id FROM events ORDER BY seq")]
    db.close()
    # Every acknowledged event is there, in order; at most the batches in flight came in too,
    # and only whole (a batch is one transaction).
    assert len(ids) >= acked
    assert ids[:acked] == [f"c{i}" for i in range(acked)]
    assert len(ids) % BATCH == 0

    # Re-running the same input completes the log without a single double.
    ing = Ingestor.from_spec(load_spec(project), project)
    report = ing.ingest(read_jsonl(data))
    assert (report.accepted + report.duplicates, report.duplicates) == (N, len(ids))
    assert ing.log.count() == N
    table = ing.offline.read_table() if ing.offline else None
    assert table is not None and table.num_rows == N
    ing.close()
