"""The batch engine: this process (``local``) or Spark (``local[N]``, ``spark://host:port``).

This module owns the SparkSession: one per process and master, started on first use (pyspark is
imported here and nowhere at module level, so ``feedstack --help`` never pays for it), with quiet
logs, UTC session time (Arrow timestamps cross the JVM unchanged), no UI port and every address
on loopback for ``local[N]``. Python workers get one BLAS/numba thread each: Spark already runs
one task per core, and a thread pool inside each task would oversubscribe the cores
(design/dependencies.md: 3.1 s vs 4.9 s for ALS).

Spark needs Java 17 (``java`` on PATH or ``JAVA_HOME``); without it ``session()`` raises
BackendUnavailable with the package to install.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedstack.core.errors import BackendUnavailable, NotSupported
from feedstack.core.spec import Spec, check_engine

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOCAL = "local"
TASKS_PER_CORE = 4  # default partitions per core: small pieces even out uneven users
_THREADS_1 = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""
_lock = threading.Lock()
_sessions: dict[str, SparkSession] = {}


@dataclass(frozen=True)
class Engine:
    """Where a batch job runs: ``master`` is ``local`` (this process) or a Spark master URL."""

    master: str = LOCAL
    partitions: int = 0  # 0: TASKS_PER_CORE per core of the master
    driver_memory: str = "2g"
    conf: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: Spec, override: str | None = None) -> Engine:
        """The spec's engine, or ``override`` (the ``--engine`` option) when given."""
        master = check_engine(override) if override else spec.engine
        s = spec.spark
        return cls(master, s.partitions, s.driver_memory, dict(s.conf))

    @property
    def is_spark(self) -> bool:
        return self.master != LOCAL

    @property
    def cores(self) -> int:
        """Cores a ``local[N]`` master runs tasks on (a cluster reports its own)."""
        m = re.fullmatch(r"local\[(\d+|\*)\]", self.master)
        if m is None:
            if self.master == LOCAL:
                return 1
            # A cluster: its cores as configured, else as the running session reports them.
            if "spark.cores.max" in self.conf:
                return max(1, int(self.conf["spark.cores.max"]))
            running = _sessions.get(self.master)
            return int(running.sparkContext.defaultParallelism) if running is not None else 2
        if m.group(1) == "*":
            return os.cpu_count() or 1
        return int(m.group(1))

    def n_partitions(self, minimum: int = 1) -> int:
        return max(minimum, self.partitions or TASKS_PER_CORE * self.cores)

    def session(self) -> SparkSession:
        if not self.is_spark:
            raise NotSupported("the local engine runs in this process: there is no Spark session")
        return spark_session(self.master, self.driver_memory, self.conf, self.n_partitions())

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.master}
        if self.is_spark:
            import pyspark

            out.update(spark_version=pyspark.__version__, cores=self.cores)
            out["partitions"] = self.n_partitions()
        return out


def java_missing() -> str | None:
    """Why Spark cannot start here (no Java), or None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return None
    if shutil.which("java"):
        return None
    return (
        "Spark needs Java 17: no `java` on PATH and no JAVA_HOME "
        "(apt-get install openjdk-17-jre-headless)"
    )


def spark_missing() -> str | None:
    """Why Spark cannot run here (pyspark or Java missing), or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed: pip install 'feedstack[spark]'"
    return java_missing()


def spark_session(
    master: str,
    driver_memory: str = "2g",
    conf: dict[str, str] | None = None,
    partitions: int = 8,
) -> SparkSession:
    """The process's SparkSession for ``master`` (started once, reused)."""
    with _lock:
        found = _sessions.get(master)
        if found is not None:
            return found
        why = spark_missing()
        if why is not None:
            raise BackendUnavailable(why)
        # Python workers run this interpreter (the venv's), with one thread per pool.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession

        scratch = Path(tempfile.gettempdir()) / f"feedstack-spark-{os.getuid()}"
        scratch.mkdir(parents=True, exist_ok=True)
        # Quiet from the first line: the JVM logs at ERROR before setLogLevel could run.
        log4j = scratch / "log4j2.properties"
        log4j.write_text(_LOG4J, encoding="utf-8")
        if master.startswith(LOCAL):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder.master(master).appName("feedstack")
        settings = {
            "spark.driver.memory": driver_memory,
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.log.level": "ERROR",
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.shuffle.partitions": str(partitions),
            "spark.python.worker.reuse": "true",
            "spark.local.dir": str(scratch / "local"),
            "spark.sql.warehouse.dir": str(scratch / "warehouse"),
            "spark.driver.extraJavaOptions": (
                f"-Dlog4j2.configurationFile=file:{log4j} -Dderby.system.home={scratch / 'derby'}"
            ),
            **{f"spark.executorEnv.{name}": "1" for name in _THREADS_1},
            "spark.executorEnv.PYTHONHASHSEED": "0",
        }
        if master.startswith(LOCAL):
            settings["spark.driver.host"] = "127.0.0.1"
            settings["spark.driver.bindAddress"] = "127.0.0.1"
        settings.update(conf or {})
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # the JVM failed to start: a backend fault, not the caller's
            raise BackendUnavailable(f"Spark {master}: cannot start: {exc}") from exc
        spark.sparkContext.setLogLevel("ERROR")
        # Iterative jobs (ALS) cut their lineage at checkpoints; without a folder the lineage of
        # 15 iterations overflows the JVM stack when a task is serialized.
        spark.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
        _sessions[master] = spark
        return spark


def stop_sessions() -> None:
    """Stop every session this process started (tests and benchmarks end with it)."""
    with _lock:
        for spark in _sessions.values():
            spark.stop()
        _sessions.clear()
