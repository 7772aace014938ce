"""Wire forms of an EventBatch: JSON lines and Arrow tables (EVENT_SCHEMA).

The JSON lines are written directly, not through pydantic models (one model per event would be
slower than the simulation itself), in exactly the canonical form of ``event_to_json``: same key
order, same time format, nulls for absent optional fields. Tests check a sample line by line with
``parse_event_json`` and ``event_to_json``. Event ids are ``w{seed}-{n}`` with n the event's
0-based position in the output, request ids ``w{seed}-r{n}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from feedstack.storage.arrow_events import EVENT_SCHEMA, TS
from feedstack.world.batch import ARTICLE, CLICK, DWELL, HIDE, IMPRESSION, KINDS, PROFILE
from feedstack.world.batch import EventBatch as Batch
from feedstack.world.config import GLOBAL_REGION
from feedstack.world.newsworld import NewsWorld
from feedstack.world.timeline import format_times

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Rows = list[int]


def _json(s: str) -> str:
    return orjson.dumps(s).decode()


class LineEncoder:
    """EventBatch -> JSON lines (bytes, one event per line, each ending in a newline)."""

    def __init__(self, world: NewsWorld) -> None:
        self.world = world
        seed = world.config.seed
        self._head = f'{{"event_id":"w{seed}-'
        self._req = f"w{seed}-r"
        self._quoted = [f'"a{i}"' for i in range(world.catalog.size)]
        self._regions = [_json(r) for r in world.config.region_names]
        self._model = _json(world.config.logger.model_version)

    def encode(self, batch: Batch, first: int) -> bytes:
        n = len(batch)
        if n == 0:
            return b""
        times = format_times(batch.time_us)
        lines = [""] * n
        encoders: dict[int, Callable[[Batch, Rows, list[str], int], list[str]]] = {
            ARTICLE: self._articles,
            PROFILE: self._profiles,
            IMPRESSION: self._impressions,
            CLICK: self._clicks,
            DWELL: self._dwells,
            HIDE: self._hides,
        }
        for code, encode in encoders.items():
            rows: Rows = np.flatnonzero(batch.kind == code).tolist()
            if rows:
                for r, line in zip(rows, encode(batch, rows, times, first), strict=True):
                    lines[r] = line
        lines.append("")
        return "\n".join(lines).encode()

    def _articles(self, b: Batch, rows: Rows, times: list[str], first: int) -> list[str]:
        cat, topics = self.world.catalog, self.world.config.topics
        arts: Rows = b.article[rows].tolist()
        published = format_times(cat.publish_us[arts])
        out = []
        for r, a, pub in zip(rows, arts, published, strict=True):
            doc = {
                "event_id": f"w{self.world.config.seed}-{first + r}",
                "event_time": times[r],
                "schema_version": 1,
                "type": "article_published",
                "article_id": f"a{a}",
                "title": cat.titles[a],
                "text": cat.texts[a],
                "topic": topics[int(cat.topic[a])],
                "region": cat.region_name(a),
                "publish_time": pub,
            }
            out.append(orjson.dumps(doc).decode())
        return out

    def _profiles(self, b: Batch, rows: Rows, times: list[str], first: int) -> list[str]:
        pop, h = self.world.population, self._head
        users: Rows = b.user[rows].tolist()
        signups = format_times(pop.signup_us[users])
        regions: Rows = pop.region[users].tolist()
        return [
            f'{h}{first + r}","event_time":"{times[r]}","schema_version":1,"type":"user_profile",'
            f'"user_id":"u{u}","region":{self._regions[g]},"signup_time":"{t}"}}'
            for r, u, g, t in zip(rows, users, regions, signups, strict=True)
        ]

    def _impressions(self, b: Batch, rows: Rows, times: list[str], first: int) -> list[str]:
        h, q, m, req = self._head, self._quoted, self._model, self._req
        users, requests, lists = _columns(b, rows, "user", "request", "items")
        return [
            f'{h}{first + r}","event_time":"{times[r]}","schema_version":1,"type":"impression",'
            f'"request_id":"{req}{rq}","user_id":"u{u}",'
            f'"item_ids":[{",".join([q[i] for i in row if i >= 0])}],"model_version":{m}}}'
            for r, u, rq, row in zip(rows, users, requests, lists, strict=True)
        ]

    def _clicks(self, b: Batch, rows: Rows, times: list[str], first: int) -> list[str]:
        h, req = self._head, self._req
        cols = _columns(b, rows, "user", "article", "request", "position")
        return [
            f'{h}{first + r}","event_time":"{times[r]}","schema_version":1,"type":"click",'
            f'"user_id":"u{u}","article_id":"a{a}","request_id":"{req}{rq}","position":{p}}}'
            for r, u, a, rq, p in zip(rows, *cols, strict=True)
        ]

    def _dwells(self, b: Batch, rows: Rows, times: list[str], first: int) -> list[str]:
        h, req = self._head, self._req
        cols = _columns(b, rows, "user", "article", "request", "dwell_ms")
        return [
            f'{h}{first + r}","event_time":"{times[r]}","schema_version":1,"type":"dwell",'
            f'"user_id":"u{u}","article_id":"a{a}","dwell_ms":{d},"request_id":"{req}{rq}"}}'
            for r, u, a, rq, d in zip(rows, *cols, strict=True)
        ]

    def _hides(self, b: Batch, rows: Rows, times: list[str], first: int) -> list[str]:
        h, req = self._head, self._req
        cols = _columns(b, rows, "user", "article", "request")
        return [
            f'{h}{first + r}","event_time":"{times[r]}","schema_version":1,"type":"hide",'
            f'"user_id":"u{u}","article_id":"a{a}","request_id":"{req}{rq}"}}'
            for r, u, a, rq in zip(rows, *cols, strict=True)
        ]


def _columns(b: Batch, rows: Rows, *names: str) -> list[list[Any]]:
    """The named columns at ``rows`` as Python lists (f-strings on Python ints are fastest)."""
    return [getattr(b, name)[rows].tolist() for name in names]


class TableEncoder:
    """EventBatch -> pyarrow Table of EVENT_SCHEMA (fields of other event types are null)."""

    def __init__(self, world: NewsWorld) -> None:
        self.world = world
        cfg = world.config
        self._article_ids = np.array([f"a{i}" for i in range(world.catalog.size)], dtype=object)
        # Article region codes are -1 (global) .. R-1: shift by one to index this table.
        self._article_regions = np.array([GLOBAL_REGION, *cfg.region_names], dtype=object)
        self._user_regions = np.array(cfg.region_names, dtype=object)
        self._topics = np.array(cfg.topics, dtype=object)
        self._kinds = np.array(KINDS, dtype=object)

    def encode(self, b: Batch, first: int) -> pa.Table:
        w, n = self.world, len(b)
        seed, cat, pop = w.config.seed, w.catalog, w.population
        art, prof = b.kind == ARTICLE, b.kind == PROFILE
        imp, click, dwell = b.kind == IMPRESSION, b.kind == CLICK, b.kind == DWELL
        a, u = np.maximum(b.article, 0), np.maximum(b.user, 0)  # safe gathers; masked below
        region = self._user_regions[pop.region[u]]
        region[art] = self._article_regions[cat.region[a[art]].astype(np.int64) + 1]
        shown = b.items[imp]
        counts = np.zeros(n, dtype=np.int64)
        counts[imp] = (shown >= 0).sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        columns = {
            "event_id": pa.array([f"w{seed}-{i}" for i in range(first, first + n)], pa.string()),
            "event_time": pa.array(b.time_us, type=TS),
            "type": pa.array(self._kinds[b.kind], pa.string()),
            "schema_version": pa.array(np.ones(n, dtype=np.int8)),
            "user_id": _ids("u", b.user),
            "article_id": _strings(self._article_ids[a], b.article >= 0),
            "request_id": _ids(f"w{seed}-r", b.request),
            "item_ids": pa.ListArray.from_arrays(
                pa.array(offsets, pa.int32()),
                pa.array(self._article_ids[shown[shown >= 0]], pa.string()),
                type=EVENT_SCHEMA.field("item_ids").type,
                mask=pa.array(~imp),
            ),
            "model_version": _strings(np.full(n, w.config.logger.model_version, object), imp),
            "position": pa.array(b.position, type=pa.int32(), mask=~click),
            "dwell_ms": pa.array(b.dwell_ms, type=pa.int64(), mask=~dwell),
            "title": _per_article(cat.titles, b.article, art),
            "text": _per_article(cat.texts, b.article, art),
            "topic": _strings(self._topics[cat.topic[a]], art),
            "region": _strings(region, art | prof),
            "publish_time": pa.array(cat.publish_us[a], type=TS, mask=~art),
            "signup_time": pa.array(pop.signup_us[u], type=TS, mask=~prof),
        }
        return pa.Table.from_arrays([columns[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def _strings(values: npt.NDArray[np.object_], present: Mask) -> pa.Array:
    return pa.array(values, pa.string(), mask=~present)


def _ids(prefix: str, idx: I64) -> pa.Array:
    out = np.full(idx.shape[0], None, dtype=object)
    has = idx >= 0
    out[has] = [f"{prefix}{i}" for i in idx[has].tolist()]
    return pa.array(out, pa.string())


def _per_article(values: list[str], article: I64, mask: Mask) -> pa.Array:
    out = np.full(article.shape[0], None, dtype=object)
    rows = np.flatnonzero(mask)
    out[rows] = [values[a] for a in article[rows].tolist()]
    return pa.array(out, pa.string())
