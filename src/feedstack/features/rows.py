"""FeatureRows: the columnar output of the aggregator, one object per feature view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from feedstack.features.definitions import VIEWS_BY_NAME

_ARROW = {
    "float32": pa.float32(),
    "int64": pa.int64(),
    "string": pa.string(),
    "float32_list": pa.list_(pa.float32()),
    "string_list": pa.list_(pa.string()),
}


def pylist(col: Any) -> list[Any]:
    """A column's values as Python objects: list columns may be Arrow list arrays (the
    aggregator builds user features that way) or Python lists."""
    if isinstance(col, pa.Array | pa.ChunkedArray):
        return col.to_pylist()  # type: ignore[no-any-return]
    return col.tolist() if isinstance(col, np.ndarray) else list(col)


@dataclass
class FeatureRows:
    """Rows of one view: entity keys, as-of times (Unix seconds) and one column per feature."""

    view: str
    keys: list[str]
    as_of_s: np.ndarray[Any, np.dtype[np.float64]]
    columns: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def to_arrow(self) -> pa.Table:
        v = VIEWS_BY_NAME[self.view]
        ts = pa.array((np.round(self.as_of_s * 1e6)).astype("int64"), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        )
        arrays = [pa.array(self.keys, pa.string()), ts]
        names = [v.entity, "event_timestamp"]
        for f in v.features:
            col = self.columns[f.name]
            if isinstance(col, pa.Array):
                arrays.append(col if col.type == _ARROW[f.dtype] else col.cast(_ARROW[f.dtype]))
            elif isinstance(col, np.ndarray) and f.dtype in ("float32", "int64"):
                arrays.append(pa.array(col.astype(f.dtype), _ARROW[f.dtype]))
            else:
                arrays.append(pa.array(list(col), _ARROW[f.dtype]))
            names.append(f.name)
        return pa.Table.from_arrays(arrays, names=names)

    def records(self) -> list[dict[str, Any]]:
        """Row dicts (tests and debugging)."""
        out = []
        columns = {
            name: pylist(col) if isinstance(col, pa.Array) else col
            for name, col in self.columns.items()
        }
        for i, key in enumerate(self.keys):
            row: dict[str, Any] = {"key": key, "as_of_s": float(self.as_of_s[i])}
            for name, col in columns.items():
                value = col[i]
                row[name] = value.tolist() if isinstance(value, np.ndarray) else value
                if isinstance(row[name], np.generic):
                    row[name] = row[name].item()
            out.append(row)
        return out


def arrow_schema(view: str) -> pa.Schema:
    v = VIEWS_BY_NAME[view]
    fields = [
        pa.field(v.entity, pa.string()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
    fields += [pa.field(f.name, _ARROW[f.dtype]) for f in v.features]
    return pa.schema(fields)


def take(fr: FeatureRows, idx: Sequence[int]) -> FeatureRows:
    """The rows ``idx`` of ``fr`` (numpy columns by fancy indexing, list columns by position)."""
    sel = np.asarray(idx, dtype=np.int64)
    cols = {
        name: col[sel]
        if isinstance(col, np.ndarray)
        else col.take(pa.array(sel))
        if isinstance(col, pa.Array)
        else [col[i] for i in idx]
        for name, col in fr.columns.items()
    }
    return FeatureRows(fr.view, [fr.keys[i] for i in idx], fr.as_of_s[sel], cols)


def cut(fr: FeatureRows, lo: int, hi: int) -> FeatureRows:
    """Rows ``lo:hi`` of ``fr`` as slices (numpy views, Arrow slices, list slices)."""
    cols = {
        name: col.slice(lo, hi - lo) if isinstance(col, pa.Array) else col[lo:hi]
        for name, col in fr.columns.items()
    }
    return FeatureRows(fr.view, fr.keys[lo:hi], fr.as_of_s[lo:hi], cols)


def concat(parts: Sequence[FeatureRows]) -> FeatureRows:
    """Rows of one view, concatenated in order."""
    first = parts[0]
    cols: dict[str, Any] = {}
    for name, col in first.columns.items():
        if isinstance(col, np.ndarray):
            cols[name] = np.concatenate([p.columns[name] for p in parts])
        elif isinstance(col, pa.Array):
            cols[name] = pa.concat_arrays([p.columns[name] for p in parts])
        else:
            cols[name] = [v for p in parts for v in p.columns[name]]
    keys = [k for p in parts for k in p.keys]
    return FeatureRows(first.view, keys, np.concatenate([p.as_of_s for p in parts]), cols)
