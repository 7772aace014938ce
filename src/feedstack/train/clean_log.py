"""The offline log as the batch jobs read it: the Parquet copy, minus quarantined rows.

``feedstack train`` and ``feedstack candidates build`` both start here. A row a job cannot use
(an id that breaks today's rule, stored before the rule existed) is counted, written to the
dead-letter store (storage/quarantine.py) and left out; the job goes on with every other row.
"""

from __future__ import annotations

from pathlib import Path

from feedstack.core.errors import InputError
from feedstack.core.spec import Spec
from feedstack.storage.deadletter import open_dead_letter
from feedstack.storage.offline import ParquetOfflineStore
from feedstack.storage.quarantine import QuarantineReport, quarantine
from feedstack.train.newslog import NewsLog


def load_clean_log(
    project: Path, spec: Spec, offline_root: Path, stage: str
) -> tuple[NewsLog, QuarantineReport]:
    """The project's NewsLog without the rows ``stage`` cannot use, and what was set aside."""
    table = ParquetOfflineStore(offline_root).read_table()
    if table.num_rows == 0:
        raise InputError(
            f"{offline_root}: no events in the offline store; run `feedstack ingest` first"
        )
    dead_letter = open_dead_letter(spec.backends.dead_letter, project)
    try:
        table, report = quarantine(table, dead_letter, stage)
    finally:
        dead_letter.close()
    return NewsLog.from_table(table), report
