"""Several serving processes on one pair of ports: ``feedstack serve --workers N``.

One Python process serves on about one core (the GIL); a replica uses its cores by running N
workers, each a complete ``feedstack serve`` (its own models, item cache, article snapshot and
connections; the stores are shared). The supervisor:

1. reserves the HTTP and gRPC ports: a socket per port with SO_REUSEPORT, bound but not listening,
   so port 0 resolves to one free port that no other program can take, and no connection is
   ever queued on the supervisor (the kernel only spreads connections over *listening*
   sockets);
2. starts N workers on those ports with SO_REUSEPORT (``run_server(reuse_port=True)``); the kernel
   balances new connections over the workers' listening sockets by a hash of the connection. A
   worker binds only once its service is built (models, the log replayed), so it receives no
   connection before it is ready; each prints one JSON line when it is, and the supervisor
   reports ready (``on_ready``) when all N have;
3. watches them: a worker that exits while serving is restarted (its metrics marked dead); more
   than ``max_restarts`` within ``restart_window_s`` stops the replica (exit code 1) rather
   than loop;
4. on SIGTERM/SIGINT forwards SIGTERM to every worker (each drains its HTTP and gRPC calls,
   ``GRACE_S``) and waits; stragglers are killed after ``grace_s`` more.

A worker reads its stdin, a pipe from the supervisor: end of file (the supervisor died, even by
SIGKILL) makes it shut down, so no orphan keeps serving.

Metrics: the workers run prometheus_client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
a fresh folder per supervisor, removed at exit); any worker's ``/metrics`` answers for all of
them (counters and histograms summed over the workers, gauges by their multiprocess mode), so a
scraper keeps one target per replica.

Caveat of SO_REUSEPORT: connections a worker had accepted into its backlog but not yet served are
reset if that worker dies; clients retry.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from feedstack.core.errors import BackendUnavailable
from feedstack.serve.server import GRACE_S, bind_http

READY_TIMEOUT_S = 600.0  # a worker replays the event log into its item cache before it binds
POLL_S = 0.2
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The command of one worker: (index, http port, grpc port) -> argv
WorkerCommand = Callable[[int, int, int], list[str]]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), the default worker count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    ready: dict[str, Any] | None = None
    lines: queue.Queue[bytes] = field(default_factory=queue.Queue)

    @property
    def pid(self) -> int:
        return self.proc.pid


def _pump_first_line(stream: IO[bytes], out: queue.Queue[bytes]) -> None:
    out.put(stream.readline())


class Supervisor:
    """Start, watch and stop ``workers`` serving processes sharing ``http_port``/``grpc_port``."""

    def __init__(
        self,
        command: WorkerCommand,
        workers: int,
        host: str,
        http_port: int,
        grpc_port: int,
        *,
        env: Mapping[str, str] | None = None,
        metrics: bool = True,
        ready_timeout_s: float = READY_TIMEOUT_S,
        grace_s: float = GRACE_S,
        max_restarts: int = MAX_RESTARTS,
        restart_window_s: float = RESTART_WINDOW_S,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.command = command
        self.n = workers
        self.host = host
        self.env = dict(os.environ if env is None else env)
        self.ready_timeout_s = ready_timeout_s
        self.grace_s = grace_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.log = log
        self._reserved = [
            bind_http(host, port, reuse_port=True, listen=False) for port in (http_port, grpc_port)
        ]
        self.http_port, self.grpc_port = (int(s.getsockname()[1]) for s in self._reserved)
        self.metrics_dir: Path | None = None
        self._own_dir = False
        if metrics:
            given = self.env.get(METRICS_ENV)
            if given:  # the operator's folder: start it empty, as prometheus_client requires
                self.metrics_dir = Path(given)
                self.metrics_dir.mkdir(parents=True, exist_ok=True)
                for stale in self.metrics_dir.glob("*.db"):
                    stale.unlink()
            else:
                self.metrics_dir = Path(tempfile.mkdtemp(prefix="feedstack-metrics-"))
                self._own_dir = True
            self.env[METRICS_ENV] = str(self.metrics_dir)
        self.workers: list[Worker] = []
        self._restarts: deque[float] = deque()
        self._stop = threading.Event()
        self.exit_code = 0

    # ------------------------------------------------------------------ workers
    def _spawn(self, index: int) -> Worker:
        argv = self.command(index, self.http_port, self.grpc_port)
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, close_fds=True
        )
        w = Worker(index, proc, time.monotonic())
        assert proc.stdout is not None
        threading.Thread(target=_pump_first_line, args=(proc.stdout, w.lines), daemon=True).start()
        return w

    def _check_ready(self, w: Worker) -> bool:
        """Whether ``w`` has reported ready (reads its line if it arrived)."""
        if w.ready is not None:
            return True
        try:
            line = w.lines.get_nowait()
        except queue.Empty:
            return False
        if not line:
            return False  # it exited before it was ready: seen by poll()
        info: dict[str, Any] = orjson.loads(line)
        if (info.get("http_port"), info.get("grpc_port")) != (self.http_port, self.grpc_port):
            raise BackendUnavailable(f"worker {w.index} bound other ports: {info}")
        w.ready = info
        return True

    def start(self) -> dict[str, Any] | None:
        """Start every worker and wait until all are ready; the replica's addresses (None when
        asked to stop meanwhile)."""
        self.workers = [self._spawn(i) for i in range(self.n)]
        deadline = time.monotonic() + self.ready_timeout_s
        while not all(self._check_ready(w) for w in self.workers):
            failed = [w for w in self.workers if w.ready is None and w.proc.poll() is not None]
            if self._stop.is_set():
                self.stop()
                return None
            if failed or time.monotonic() > deadline:
                self.stop()
                if failed:
                    codes = {w.index: w.proc.returncode for w in failed}
                    raise BackendUnavailable(f"serving workers exited before ready: {codes}")
                raise BackendUnavailable(
                    f"serving workers not ready after {self.ready_timeout_s:.0f} s"
                )
            time.sleep(0.05)
        return self.info()

    def info(self) -> dict[str, Any]:
        grpc_host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "host": self.host,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "http": f"http://{grpc_host}:{self.http_port}",
            "grpc": f"{grpc_host}:{self.grpc_port}",
            "workers": self.n,
            "pids": [w.pid for w in self.workers],
            "supervisor_pid": os.getpid(),
            "metrics_dir": str(self.metrics_dir) if self.metrics_dir else None,
        }

    def _replace(self, w: Worker) -> None:
        code = w.proc.returncode
        self._mark_dead(w.pid)
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.restart_window_s:
            self._restarts.popleft()
        if len(self._restarts) > self.max_restarts:
            self.log(
                f"feedstack serve: worker {w.index} (pid {w.pid}) exited with {code}; "
                f"{len(self._restarts)} restarts within {self.restart_window_s:.0f} s: stopping"
            )
            self.exit_code = 1
            self._stop.set()
            return
        self.log(f"feedstack serve: worker {w.index} (pid {w.pid}) exited with {code}; restarting")
        self.workers[w.index] = self._spawn(w.index)

    def _mark_dead(self, pid: int) -> None:
        if self.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ lifecycle
    def run(self, on_ready: Callable[[dict[str, Any]], None] = lambda info: None) -> int:
        """Start, call ``on_ready``, then watch until SIGTERM/SIGINT; returns the exit code."""

        def _note(sig: int, frame: FrameType | None) -> None:
            self._stop.set()

        previous = {s: signal.signal(s, _note) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            info = self.start()
            if info is None:
                return self.exit_code
            on_ready(info)
            while not self._stop.wait(POLL_S):
                for w in list(self.workers):
                    self._check_ready(w)
                    if w.proc.poll() is not None and not self._stop.is_set():
                        self._replace(w)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.exit_code

    def stop(self) -> None:
        """SIGTERM every worker, wait for their graceful shutdown, kill what remains."""
        self._stop.set()
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + 10.0
        for w in self.workers:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
                self.exit_code = self.exit_code or 1
            if w.proc.returncode not in (0, -signal.SIGTERM) and self.exit_code == 0:
                self.exit_code = 1
            for stream in (w.proc.stdin, w.proc.stdout):
                if stream is not None:
                    stream.close()
        for sock in self._reserved:
            sock.close()
        self._reserved = []
        if self.metrics_dir is not None and self._own_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


def watch_parent(fd: int = 0) -> None:
    """In a worker: shut down (SIGTERM to itself) when the supervisor's pipe on ``fd`` (stdin)
    closes. Raw ``os.read``: a daemon thread blocked in Python's buffered reader aborts the
    interpreter at exit."""

    def _wait() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=_wait, name="supervisor-pipe", daemon=True).start()
