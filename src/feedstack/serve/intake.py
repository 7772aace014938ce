"""Event writes off the feed threads: one writer thread per serving process owns the ingest
pipeline; the API's event posts and the served lists (impressions) wait for it in memory and are
stored together, a group commit.

- ``submit(records)`` (an API post) queues the batch, wakes the writer and returns a future that
  resolves to the batch's own result once it is durable (the acknowledgement), or to the
  backend's error: nothing is acknowledged before it is stored;
- ``log(payload)`` (an impression, from a feed request) appends to a deque and wakes no thread:
  waking a thread per request cost the request 1.5-3 ms about every other time, measured, as the
  two threads traded the GIL. Impressions wait at most ``max_delay_s`` (or ride along with the
  next post). If the log is down they are counted (``on_error``) and dropped: serving never
  waits on logging, and an impression's event id is derived from its request id, so a client's
  retry never logs a list twice.

Each commit is one ``Ingestor.ingest_many``: validation, one dead-letter write, one log
transaction (one fsync) for everything waiting, each post answered with its own counts. While a
commit runs, new posts queue and share the next one, so the commit rate stays bounded however
many posts arrive, and the feed threads only ever read. Across processes, appends to the
embedded log queue on a file lock (storage/sqlite_log.py).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from feedstack.core.errors import BackendUnavailable
from feedstack.ingest.pipeline import BatchResult, Ingestor
from feedstack.ingest.records import RawRecord

log = logging.getLogger(__name__)


class EventWriter:
    """The serving process's one writer of events (see the module docstring)."""

    def __init__(
        self,
        ingestor: Ingestor,
        max_delay_s: float,
        on_error: Callable[[Exception], None] = lambda exc: None,
        on_logged: Callable[[int], None] = lambda n: None,
        start: bool = True,
    ) -> None:
        self.ingestor = ingestor
        self.max_delay_s = max_delay_s
        self.on_error = on_error
        self.on_logged = on_logged
        self._posts: deque[tuple[Sequence[RawRecord], Future[BatchResult]]] = deque()
        self._impressions: deque[bytes] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        if start:
            self._thread.start()

    def start(self) -> None:
        """Start the writer thread (when built with ``start=False``: tests queue first)."""
        self._thread.start()

    def submit(self, records: Sequence[RawRecord]) -> Future[BatchResult]:
        """Store ``records`` with the next commit; the future resolves when they are durable."""
        fut: Future[BatchResult] = Future()
        if self._stop.is_set():
            fut.set_exception(BackendUnavailable("the server is shutting down"))
            return fut
        self._posts.append((records, fut))
        self._wake.set()
        return fut

    def log(self, payload: bytes) -> None:
        """Queue one impression event (JSON); never blocks, wakes nothing."""
        self._impressions.append(payload)

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self._wake.wait(self.max_delay_s)
            self._wake.clear()
            self._commit()
            if stopping:
                self._commit()  # whatever arrived during the last one
                return

    def _commit(self) -> None:
        posts = [self._posts.popleft() for _ in range(len(self._posts))]
        payloads = [self._impressions.popleft() for _ in range(len(self._impressions))]
        if not posts and not payloads:
            return
        batches = [records for records, _ in posts]
        if payloads:
            batches.append([RawRecord("serve", 0, p) for p in payloads])
        try:
            results = self.ingestor.ingest_many(batches)
        except Exception as exc:  # the backend's fault: every waiting post learns it
            for _, fut in posts:
                fut.set_exception(exc)
            if payloads:
                log.warning("%d impressions not logged: %s", len(payloads), exc)
                self.on_error(exc)
            return
        self.commits += 1
        for (_, fut), result in zip(posts, results, strict=False):
            fut.set_result(result)
        if payloads:
            self.on_logged(results[-1].accepted)

    def close(self, timeout_s: float = 5.0) -> None:
        """Store what is queued, then stop; later posts fail (BackendUnavailable)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        while self._posts:  # raced with the last commit
            self._posts.popleft()[1].set_exception(BackendUnavailable("the server stopped"))
