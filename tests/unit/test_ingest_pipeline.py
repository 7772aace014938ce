"""The ingest pipeline on real embedded stores: dedupe, dead letters, offline copy, readers."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feedstack.core.clock import FixedClock
from feedstack.core.errors import InputError
from feedstack.core.events import EVENT_ADAPTER
from feedstack.core.spec import Ingest
from feedstack.ingest.pipeline import BatchResult, Ingestor
from feedstack.ingest.readers import check_inputs, read_events
from feedstack.ingest.validate import Validator
from feedstack.storage.arrow_events import dicts_to_table
from feedstack.storage.deadletter import FileDeadLetter
from feedstack.storage.offline import ParquetOfflineStore
from feedstack.storage.sqlite_log import SqliteEventLog
from tests.conftest import NOW
from tests.factories import click, jsonl, mixed


def make(tmp_path: Path, batch: int = 4) -> Ingestor:
    return Ingestor(
        SqliteEventLog(tmp_path / "events.sqlite"),
        FileDeadLetter(tmp_path / "dl"),
        Validator(Ingest(), FixedClock(NOW)),
        ParquetOfflineStore(tmp_path / "offline", rows_per_export=5),
        batch_size=batch,
    )


def records(tmp_path: Path, content: bytes, name: str = "in.jsonl") -> list[object]:
    p = tmp_path / name
    p.write_bytes(content)
    [(path, fmt)] = check_inputs([p], None)
    return list(read_events(path, fmt))


def test_ingest_acks_every_batch_and_counts(tmp_path: Path) -> None:
    ing = make(tmp_path)
    content = jsonl(mixed(10)) + b"not json\n" + jsonl([click(1)])  # last is a duplicate of #1
    acks: list[BatchResult] = []
    report = ing.ingest(records(tmp_path, content), on_ack=acks.append)  # type: ignore[arg-type]
    assert (report.accepted, report.duplicates, report.rejected) == (10, 1, 1)
    assert sum(a.accepted for a in acks) == 10
    assert report.batches == len(acks) == 3
    assert report.errors == [
        {
            "source": str(tmp_path / "in.jsonl"),
            "line": 11,
            "field": "<record>",
            "reason": report.errors[0]["reason"],
        }
    ]
    dl = ing.dead_letter.read()
    assert [(r.line, r.raw) for r in dl] == [(11, "not json")]


def test_reingest_changes_nothing(tmp_path: Path) -> None:
    ing = make(tmp_path)
    content = jsonl(mixed(9)) + b'{"type": "nope"}\n'
    ing.ingest(records(tmp_path, content))  # type: ignore[arg-type]
    log_before = ing.log.read_raw()
    dl_before = ing.dead_letter.read()
    offline_before = ing.offline.read_table() if ing.offline else None
    again = ing.ingest(records(tmp_path, content))  # type: ignore[arg-type]
    assert (again.accepted, again.duplicates, again.rejected) == (0, 9, 1)
    assert ing.log.read_raw() == log_before
    assert ing.dead_letter.read() == dl_before
    assert ing.offline is not None and ing.offline.read_table().equals(offline_before)


def test_offline_copy_is_partitioned_by_date_and_complete(tmp_path: Path) -> None:
    ing = make(tmp_path)
    ing.ingest(records(tmp_path, jsonl(mixed(12))))  # type: ignore[arg-type]
    root = tmp_path / "offline" / "events"
    dates = sorted(p.name for p in root.glob("date=*"))
    assert dates == ["date=2026-01-01", "date=2026-01-02"]
    table = ParquetOfflineStore(tmp_path / "offline").read_table()
    assert sorted(table["event_id"].to_pylist()) == sorted(e["event_id"] for e in mixed(12))
    assert str(table.schema.field("event_time").type) == "timestamp[us, tz=UTC]"


def test_offline_sync_recovers_from_a_crash_between_parts(tmp_path: Path) -> None:
    ing = make(tmp_path)
    ing.ingest(records(tmp_path, jsonl(mixed(6))), sync_offline=False)  # type: ignore[arg-type]
    store = ParquetOfflineStore(tmp_path / "offline", rows_per_export=100)
    # A crash after a part was written but before the manifest moved: an orphan past the manifest.
    orphan = store.events_dir / "date=2026-01-01" / "part-00000001.parquet"
    orphan.parent.mkdir(parents=True)
    pq.write_table(dicts_to_table([]), orphan)
    (store.events_dir / "date=2026-01-01" / "part-00000009.parquet.tmp").write_bytes(b"torn")
    assert store.sync(ing.log) == 6
    table = store.read_table()
    assert sorted(table["event_id"].to_pylist()) == sorted(e["event_id"] for e in mixed(6))
    assert not list(store.events_dir.glob("**/*.tmp"))
    assert store.sync(ing.log) == 0


def test_offline_row_equals_the_logged_event(tmp_path: Path) -> None:
    ing = make(tmp_path)
    ing.ingest(records(tmp_path, jsonl(mixed(3))))  # type: ignore[arg-type]
    assert ing.offline is not None
    rows = {r["event_id"]: r for r in ing.offline.read_table().to_pylist()}
    for rec in ing.log.read():
        row = {k: v for k, v in rows[rec.event.event_id].items() if v is not None}
        row.pop("date"), row.pop("log_offset")
        assert EVENT_ADAPTER.validate_python(row) == rec.event


def test_csv_and_parquet_inputs(tmp_path: Path) -> None:
    csv = (
        "type,event_id,event_time,request_id,user_id,item_ids,model_version,article_id,position\n"
        "impression,i1,2026-01-01T00:00:00Z,r1,u1,a1|a2|a3,m0,,\n"
        'impression,i2,2026-01-01T00:00:01Z,r2,u1,"[""a1"",""a2""]",m0,,\n'
        "click,c1,2026-01-01T00:00:02Z,r1,u1,,,a2,1\n"
        "click,c2,2026-01-01T00:00:02Z,r1,u1\n"
    )
    ing = make(tmp_path)
    report = ing.ingest(records(tmp_path, csv.encode(), "in.csv"))  # type: ignore[arg-type]
    assert (report.accepted, report.rejected) == (3, 1)
    assert report.errors[0]["line"] == 5
    evs = [r.event for r in ing.log.read()]
    assert evs[0].item_ids == ["a1", "a2", "a3"]  # type: ignore[union-attr]
    assert evs[1].item_ids == ["a1", "a2"]  # type: ignore[union-attr]
    # Parquet: the offline copy's own files ingest into a fresh project unchanged.
    assert ing.offline is not None
    part = next((tmp_path / "offline" / "events").glob("date=*/*.parquet"))
    fresh = make(tmp_path / "fresh")
    got = fresh.ingest(records(tmp_path, part.read_bytes(), "copy.parquet"))  # type: ignore[arg-type]
    assert (got.accepted, got.rejected) == (0, 3)  # log_offset is not an event field


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bin.jsonl", b"\x00\x01\x02binary\x00", "binary content"),
        ("x.parquet", b"PAR1 not really", "not a readable Parquet"),
        ("x.txt", b"{}", "cannot tell the format"),
    ],
)
def test_unreadable_inputs_fail_before_anything_is_read(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "ok.jsonl").write_bytes(jsonl([click(1)]))
    with pytest.raises(InputError, match=message):
        check_inputs([tmp_path / "ok.jsonl", tmp_path / name], None)


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        check_inputs([tmp_path / "nope.jsonl"], None)


def test_stream_intake_flushes_on_size_and_on_delay(tmp_path: Path) -> None:
    import orjson

    from feedstack.core.clock import FixedClock
    from feedstack.ingest.pipeline import StreamIntake
    from feedstack.ingest.records import RawRecord

    clock = FixedClock(NOW)
    intake = StreamIntake(make(tmp_path, batch=3), max_delay_s=1.0, clock=clock)
    recs = [RawRecord("api", 0, orjson.dumps(click(i))) for i in range(5)]
    assert intake.submit(recs[0]) is None
    assert intake.submit(recs[1]) is None
    full = intake.submit(recs[2])
    assert full is not None and full.accepted == 3
    assert intake.submit(recs[3]) is None
    clock.advance(1.5)
    late = intake.submit(recs[4])
    assert late is not None and (late.accepted, intake.pending) == (2, 0)
    # Batch = single: the log holds exactly what one batch ingest of the same records holds.
    single = make(tmp_path / "single", batch=100)
    single.ingest(recs, sync_offline=False)
    assert single.log.read_raw() == intake.ingestor.log.read_raw()
