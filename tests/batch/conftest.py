"""Spark in ``local[2]``: one session for the whole test run (starting one takes seconds).

Without Java or pyspark the Spark tests skip with the reason, except under CI=true, where a
missing engine is a failure (CI installs Java 17 and ``make venv`` installs pyspark)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from feedstack.batch.engine import Engine, spark_missing, stop_sessions


@pytest.fixture(scope="session")
def spark_engine() -> Iterator[Engine]:
    why = spark_missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Spark cannot run: {why}")
        pytest.skip(why)
    engine = Engine("local[2]", partitions=2)
    engine.session()
    yield engine
    stop_sessions()
