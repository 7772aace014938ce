"""Impression logging off the hot path: a request enqueues its served list and returns; one
background thread hands them to the ingest pipeline (``StreamIntake``: the same validation, dead
letters and idempotent append as every event) in batches.

An impression is an ``impression`` event: request id, user, the served items in order (position =
index) and the model version; its event id is derived from the request id, so a retried flush
never logs a list twice. If the event log is down the batch is counted as an error and dropped:
serving never waits on logging (the click's request id still names the request).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import orjson

from feedstack.core.errors import FeedstackError
from feedstack.ingest.pipeline import StreamIntake
from feedstack.ingest.records import RawRecord

log = logging.getLogger(__name__)
_STOP = object()


def impression_payload(
    request_id: str, user_id: str, items: Sequence[str], model_version: str, at: datetime
) -> bytes:
    return orjson.dumps(
        {
            "type": "impression",
            "event_id": f"imp-{request_id}",
            "event_time": at.isoformat(),
            "request_id": request_id,
            "user_id": user_id,
            "item_ids": list(items),
            "model_version": model_version,
        }
    )


class ImpressionLogger:
    """``log(payload)`` never blocks; ``close()`` flushes what is queued."""

    def __init__(
        self,
        intake: StreamIntake,
        lock: threading.Lock,
        on_error: Callable[[Exception], None] = lambda exc: None,
        on_logged: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.intake = intake
        self.lock = lock  # shared with the API's ingest: one writer on the pipeline at a time
        self.on_error = on_error
        self.on_logged = on_logged
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()

    def log(self, payload: bytes) -> None:
        self._queue.put(payload)

    def _run(self) -> None:
        wait = self.intake.max_delay_s
        while True:
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush()
                return
            with self.lock:
                try:
                    if isinstance(item, bytes):
                        done = self.intake.submit(RawRecord("serve", 0, item))
                        if done is not None:
                            self.on_logged(done.accepted)
                    elif self.intake.pending and self.intake.due():
                        self.on_logged(self.intake.flush().accepted)
                except FeedstackError as exc:
                    self._failed(exc)

    def _flush(self) -> None:
        with self.lock:
            try:
                if self.intake.pending:
                    self.on_logged(self.intake.flush().accepted)
            except FeedstackError as exc:
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        # StreamIntake.flush has already dropped the batch from its queue: counted, not retried.
        log.warning("impression batch not logged: %s", exc)
        self.on_error(exc)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
