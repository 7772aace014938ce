"""A project's event log as arrays: the one read every step of news training works from.

Dense indices for articles (in order of publication; an article seen only in impressions or
clicks is appended with an unknown publish time and no text) and users (profiles first), times as
Unix seconds, impressions as a padded [requests, k] item matrix with positions = columns, and
clicks linked to the impression they came from (by request id). The full event table, sorted by
(event time, log offset), is kept for the feature aggregator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from feedstack.core.errors import InputError
from feedstack.models.candidates.trending import GLOBAL, UNKNOWN, Exposures

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
GLOBAL_REGION = "global"


@dataclass(frozen=True, slots=True)
class Clicks:
    user: IntArray
    item: IntArray
    time_s: F64Array
    request: IntArray  # row in Impressions, -1 when the click names no logged request
    position: IntArray  # position in that impression, -1 when unknown


@dataclass(frozen=True, slots=True)
class Impressions:
    request_ids: list[str]
    user: IntArray
    time_s: F64Array
    items: IntArray  # [n, k], -1 padded; column = position

    @property
    def n(self) -> int:
        return int(self.user.size)


@dataclass(frozen=True)
class NewsLog:
    events: pa.Table  # every event, sorted by (event_time, log_offset)
    event_s: F64Array  # event time of each row of ``events``
    article_ids: list[str]
    publish_s: F64Array  # NaN when no article_published event was seen
    article_topic: list[str]
    article_region: IntArray  # index into regions, GLOBAL for "global"
    texts: list[str]  # title and text
    user_ids: list[str]
    user_region: IntArray  # index into regions, UNKNOWN before a profile
    regions: tuple[str, ...]
    clicks: Clicks
    impressions: Impressions

    @property
    def n_items(self) -> int:
        return len(self.article_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def start_s(self) -> float:
        return float(self.event_s[0])

    @property
    def end_s(self) -> float:
        return float(self.event_s[-1])

    def click_exposures(self) -> Exposures:
        c = self.clicks
        return Exposures(c.item, self.user_region[c.user], c.time_s)

    def shown_exposures(self) -> Exposures:
        imp = self.impressions
        k = imp.items.shape[1]
        shown = imp.items.ravel() >= 0
        return Exposures(
            imp.items.ravel()[shown],
            np.repeat(self.user_region[imp.user], k)[shown],
            np.repeat(imp.time_s, k)[shown],
        )

    @classmethod
    def load(cls, offline_root: Path) -> NewsLog:
        """From the offline store's Parquet copy (``<offline>/events/date=*/*.parquet``)."""
        from feedstack.storage.offline import ParquetOfflineStore

        table = ParquetOfflineStore(offline_root).read_table()
        if table.num_rows == 0:
            raise InputError(
                f"{offline_root}: no events in the offline store; run `feedstack ingest` first"
            )
        return cls.from_table(table)

    @classmethod
    def from_table(cls, table: pa.Table) -> NewsLog:
        """From a table of EVENT_SCHEMA (a ``log_offset`` column, if present, breaks time ties)."""
        if "date" in table.column_names:
            table = table.drop_columns(["date"])
        keys = [("event_time", "ascending")]
        if "log_offset" in table.column_names:
            # The leading integer: SQLite's sequence number, Kafka's ``sum@vector`` position
            # (its sum grows along the log's merge order), a Redis id's milliseconds.
            lead = pc.extract_regex(table["log_offset"], r"^(?P<n>\d+)")
            offset = pc.cast(pc.struct_field(lead, "n"), pa.int64())
            table = table.append_column("_offset", offset)
            keys.append(("_offset", "ascending"))
        table = table.sort_by(keys)
        event_s = _seconds(table["event_time"])
        kind = table["type"]

        def rows(name: str) -> pa.Table:
            return table.filter(pc.equal(kind, name))

        arts, profiles = rows("article_published"), rows("user_profile")
        imps, clicks = rows("impression"), rows("click")
        # A log without impressions (clicks only: an interaction log) is valid here; the news
        # recipe refuses it (train/project.py), the interactions recipe needs only the clicks.
        # Articles: published ones in publish order, then any seen only in impressions/clicks.
        arts = arts.sort_by([("publish_time", "ascending"), ("article_id", "ascending")])
        first = pc.index_in(arts["article_id"], value_set=pc.unique(arts["article_id"]))
        keep = np.unique(first.to_numpy(), return_index=True)[1]
        arts = arts.take(np.sort(keep))
        article_ids: list[str] = arts["article_id"].to_pylist()
        seen = set(article_ids)
        shown = pc.list_flatten(imps["item_ids"]).to_pylist()
        extra = [a for a in dict.fromkeys([*shown, *clicks["article_id"].to_pylist()])]
        extra = [a for a in extra if a not in seen]
        n_pub = len(article_ids)
        article_ids += extra
        publish = np.concatenate([_seconds(arts["publish_time"]), np.full(len(extra), np.nan)])
        topics = [*arts["topic"].to_pylist(), *(["unknown"] * len(extra))]
        art_region_names = [*arts["region"].to_pylist(), *([GLOBAL_REGION] * len(extra))]
        titles, bodies = arts["title"].to_pylist(), arts["text"].to_pylist()
        texts = [f"{t or ''}. {b or ''}" for t, b in zip(titles, bodies, strict=True)]
        texts += [""] * len(extra)
        assert len(texts) == len(article_ids) and n_pub == len(titles)

        # Users: profiles (latest region wins), then users seen only in impressions or clicks.
        region_of = dict(
            zip(profiles["user_id"].to_pylist(), profiles["region"].to_pylist(), strict=True)
        )
        user_ids = list(
            dict.fromkeys(
                [*region_of, *imps["user_id"].to_pylist(), *clicks["user_id"].to_pylist()]
            )
        )
        names = sorted({*region_of.values(), *art_region_names} - {GLOBAL_REGION})
        regions = tuple(str(r) for r in names)
        rindex = {r: i for i, r in enumerate(regions)}
        user_region = np.array(
            [rindex.get(region_of.get(u, ""), UNKNOWN) for u in user_ids], dtype=np.int64
        )
        article_region = np.array(
            [GLOBAL if r == GLOBAL_REGION else rindex[r] for r in art_region_names], np.int64
        )

        user_value_set = pa.array(user_ids, pa.string())
        item_value_set = pa.array(article_ids, pa.string())
        k = int(pc.max(pc.list_value_length(imps["item_ids"])).as_py() or 0)
        lengths = pc.list_value_length(imps["item_ids"]).to_numpy()
        flat = pc.index_in(pc.list_flatten(imps["item_ids"]), value_set=item_value_set)
        items = np.full((imps.num_rows, k), -1, dtype=np.int64)
        row = np.repeat(np.arange(imps.num_rows), lengths)
        col = np.arange(row.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        items[row, col] = flat.to_numpy()
        request_ids: list[str] = imps["request_id"].to_pylist()
        impressions = Impressions(
            request_ids,
            _index(imps["user_id"], user_value_set),
            _seconds(imps["event_time"]),
            items,
        )

        request_pos = {r: i for i, r in enumerate(request_ids)}
        c_request = np.array(
            [
                request_pos.get(r, -1) if r is not None else -1
                for r in clicks["request_id"].to_pylist()
            ],
            dtype=np.int64,
        )
        c_item = _index(clicks["article_id"], item_value_set)
        # The position: the click's own field, else where the item was in its impression.
        c_pos = clicks["position"].to_numpy(zero_copy_only=False)
        c_pos = np.where(np.isnan(c_pos.astype(np.float64)), -1, c_pos).astype(np.int64)
        linked = c_request >= 0
        if imps.num_rows:
            where = items[np.where(linked, c_request, 0)] == c_item[:, None]
            found = np.where(where.any(axis=1), where.argmax(axis=1), -1)
            c_pos = np.where((c_pos < 0) & linked, found, c_pos)
        click_table = Clicks(
            _index(clicks["user_id"], user_value_set),
            c_item,
            _seconds(clicks["event_time"]),
            c_request,
            c_pos,
        )
        return cls(
            table,
            event_s,
            article_ids,
            publish,
            [str(t) for t in topics],
            article_region,
            texts,
            user_ids,
            user_region,
            regions,
            click_table,
            impressions,
        )


def _seconds(column: pa.ChunkedArray) -> F64Array:
    """Unix seconds of a timestamp column (null: NaN)."""
    us = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    out: F64Array = us.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    return out


def _index(column: pa.ChunkedArray, value_set: pa.Array) -> IntArray:
    out: IntArray = pc.index_in(column, value_set=value_set).to_numpy().astype(np.int64)
    return out
