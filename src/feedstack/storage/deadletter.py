"""The dead-letter store: every rejected input record, kept with its raw text and the reason.

Port: ``write(rejections)`` is durable before it returns and idempotent (an entry is keyed by a
hash of its source, raw text and reason, so re-ingesting a bad file does not grow the store);
``read()`` returns every entry; ``location`` says where to look.

Backends: ``file://DIR`` (``DIR/dead_letter.jsonl``, appended and fsynced) and ``redis://``
(a stream ``{prefix}:dead_letter`` with a set of entry keys).

Several processes may write the same file (the serving workers): a write holds an exclusive
``flock`` on it, first reads what others appended since its last look (their keys), then
appends and fsyncs; so an entry two processes reject at once is stored once, and a partial last
line seen under the lock can only be a crash's, never another writer's line in progress.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from feedstack.core.errors import BackendUnavailable
from feedstack.core.redact import redact_url
from feedstack.storage.urls import parse_backend_url, redis_client

DEAD_LETTER_SCHEMES = ("file", "redis")


@dataclass(frozen=True)
class Rejection:
    """One input record that did not become an event."""

    source: str  # file path or "api"
    line: int  # 1-based line or row number in the source; 0 when not applicable
    field: str  # dotted field path, or "<record>" for the record as a whole
    reason: str
    raw: str  # the raw text as received (undecodable bytes shown as \\x escapes)

    def key(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for part in (self.source, str(self.line), self.field, self.reason, self.raw):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.hexdigest()


class DeadLetterStore(Protocol):
    location: str

    def write(self, rejections: Sequence[Rejection]) -> int:
        """Store the rejections durably; returns how many were new."""
        ...

    def read(self) -> list[Rejection]: ...

    def close(self) -> None: ...


def _check_open(closed: bool, location: str) -> None:
    if closed:
        raise BackendUnavailable(f"dead-letter store {location}: closed")


class FileDeadLetter:
    FILE = "dead_letter.jsonl"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / self.FILE
        self.location = str(self.path)
        self._keys: set[str] = set()
        self._seen = 0  # bytes of the file whose keys are in _keys
        self._closed = False

    def _catch_up(self, f: Any) -> None:
        """Under the lock: drop a crash's partial last line, then read the keys appended since
        the last look (by this or another process)."""
        size = os.fstat(f.fileno()).st_size
        if size < self._seen:  # replaced or truncated under us: read it all again
            self._keys.clear()
            self._seen = 0
        if size == self._seen:
            return
        f.seek(self._seen)
        data = f.read(size - self._seen)
        end = data.rfind(b"\n") + 1
        if end < len(data):  # never acknowledged: the writer died mid-line
            f.truncate(self._seen + end)
            os.fsync(f.fileno())
        for line in data[:end].splitlines():
            self._keys.add(orjson.loads(line)["key"])
        self._seen += end

    def write(self, rejections: Sequence[Rejection]) -> int:
        _check_open(self._closed, self.location)
        if not rejections:
            return 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file closes
                self._catch_up(f)
                lines = []
                for r in rejections:
                    k = r.key()
                    if k in self._keys:
                        continue
                    self._keys.add(k)
                    lines.append(orjson.dumps({"key": k, **asdict(r)}) + b"\n")
                if lines:
                    data = b"".join(lines)
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    self._seen += len(data)
        except OSError as exc:
            raise BackendUnavailable(f"dead-letter store {self.location}: {exc}") from exc
        return len(lines)

    def read(self) -> list[Rejection]:
        _check_open(self._closed, self.location)
        if not self.path.exists():
            return []
        out = []
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                d = orjson.loads(line)
                d.pop("key")
                out.append(Rejection(**d))
        return out

    def close(self) -> None:
        self._closed = True


_DL_APPEND = """
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[i + 1])
    added = added + 1
  end
end
return added
"""


class RedisDeadLetter:
    def __init__(self, url: str, prefix: str = "feedstack", client: Any = None) -> None:
        import redis

        self.stream = f"{prefix}:dead_letter"
        self.keys = f"{prefix}:dead_letter_keys"
        self.location = f"{redact_url(url.split('?')[0])} stream {self.stream}"
        self._err: type[Exception] = redis.RedisError
        self._r: Any = client or redis_client(url)
        # No round trip here: a server whose dead-letter store is down still starts and serves
        # feeds; writing a rejection then fails (BackendUnavailable: the batch is not
        # acknowledged) until the store is back.
        self._script = self._r.register_script(_DL_APPEND)
        self._closed = False

    def write(self, rejections: Sequence[Rejection]) -> int:
        _check_open(self._closed, self.location)
        if not rejections:
            return 0
        args: list[Any] = []
        for r in rejections:
            args.append(r.key())
            args.append(orjson.dumps(asdict(r)))
        try:
            return int(self._script(keys=[self.stream, self.keys], args=args))
        except self._err as exc:
            raise BackendUnavailable(f"dead-letter store {self.location}: {exc}") from exc

    def read(self) -> list[Rejection]:
        _check_open(self._closed, self.location)
        try:
            entries = self._r.xrange(self.stream, "-", "+")
        except self._err as exc:
            raise BackendUnavailable(f"dead-letter store {self.location}: {exc}") from exc
        return [Rejection(**orjson.loads(fields[b"r"])) for _, fields in entries]

    def drop(self) -> None:
        self._r.delete(self.stream, self.keys)

    def close(self) -> None:
        # redis-py would reconnect on the next command after close(): the flag makes a closed
        # store refuse, as the file store does.
        self._closed = True
        self._r.close()


def open_dead_letter(url: str, project: Path) -> DeadLetterStore:
    parsed = parse_backend_url(url, "dead_letter", DEAD_LETTER_SCHEMES, project)
    if parsed.scheme == "file":
        assert parsed.path is not None
        return FileDeadLetter(parsed.path)
    return RedisDeadLetter(url, prefix=parsed.prefix)
