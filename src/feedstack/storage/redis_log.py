"""Event log on Redis Streams: ``{prefix}:events`` (the stream) and ``{prefix}:event_ids`` (a set).

One Lua script per batch checks each id against the set and XADDs the new ones, so a batch is
applied atomically on the server and re-ingestion is a no-op. Offsets are stream entry ids.
Durability is the server's: run Redis with ``appendonly yes`` and ``appendfsync always`` to make
"acknowledged" mean "on disk" (this machine's Redis keeps nothing on disk; it is for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feedstack.core.errors import BackendUnavailable
from feedstack.core.events import EVENT_ADAPTER, Event
from feedstack.core.redact import redact_url
from feedstack.storage.eventlog import AppendResult, Batch, LogRecord
from feedstack.storage.urls import redis_client

_APPEND = """
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    added = added + 1
  end
end
return added
"""

# Events per Lua call; a batch of several calls is sent as one MULTI/EXEC transaction.
_CHUNK = 2_000


class RedisStreamEventLog:
    def __init__(self, url: str, prefix: str = "feedstack", client: Any = None) -> None:
        import redis

        self.url = redact_url(url)  # shown in messages and reports; the client keeps the real one
        self.prefix = prefix
        self.stream = f"{prefix}:events"
        self.ids = f"{prefix}:event_ids"
        self._redis_error: type[Exception] = redis.RedisError
        self._r: Any = client or redis_client(url)
        try:
            self._script = self._r.register_script(_APPEND)
            self._r.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"event log {self.url}: {exc}") from exc

    def append(
        self, events: Sequence[Event], payloads: Sequence[bytes] | None = None
    ) -> AppendResult:
        return self.append_many([(events, payloads)])[0]

    def append_many(self, batches: Sequence[Batch]) -> list[AppendResult]:
        if not any(len(events) for events, _ in batches):
            return [AppendResult(0, 0) for _ in batches]
        owner: list[int] = []  # the batch each Lua call belongs to
        try:
            # MULTI/EXEC: every chunk of every batch runs back to back, nothing interleaved.
            pipe = self._r.pipeline(transaction=True)
            for b, (events, payloads) in enumerate(batches):
                if payloads is None:
                    payloads = [EVENT_ADAPTER.dump_json(e) for e in events]
                for start in range(0, len(events), _CHUNK):
                    args: list[Any] = []
                    for i in range(start, min(start + _CHUNK, len(events))):
                        args.append(events[i].event_id)
                        args.append(payloads[i])
                    self._script(keys=[self.stream, self.ids], args=args, client=pipe)
                    owner.append(b)
            added = pipe.execute()
        except self._redis_error as exc:
            raise BackendUnavailable(f"event log {self.url}: append failed: {exc}") from exc
        accepted = [0] * len(batches)
        for b, n in zip(owner, added, strict=True):
            accepted[b] += int(n)
        return [
            AppendResult(a, len(events) - a)
            for a, (events, _) in zip(accepted, batches, strict=True)
        ]

    def read(self, after: str | None = None, limit: int = 10_000) -> list[LogRecord]:
        parse = EVENT_ADAPTER.validate_json
        return [LogRecord(offset, parse(p)) for offset, p in self.read_raw(after, limit)]

    def read_raw(self, after: str | None = None, limit: int = 10_000) -> list[tuple[str, bytes]]:
        start = f"({after}" if after is not None else "-"
        try:
            entries = self._r.xrange(self.stream, min=start, max="+", count=limit)
        except self._redis_error as exc:
            raise BackendUnavailable(f"event log {self.url}: read failed: {exc}") from exc
        return [(_s(entry_id), bytes(fields[b"e"])) for entry_id, fields in entries]

    def count(self) -> int:
        return int(self._r.xlen(self.stream))

    def drop(self) -> None:
        """Delete this log's keys (tests and `feedstack reset`)."""
        self._r.delete(self.stream, self.ids)

    def close(self) -> None:
        self._r.close()


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
