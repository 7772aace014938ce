"""Feast's wire format, written and read without Feast's generic machinery: ValueProtos from our
columns (byte-identical to Feast's Arrow->proto conversion), the ``value_text`` column, Feast's
SQLite event-time integers, and a stored ValueProto back to the value ``get_online_features``
returns. Pinned against Feast's own functions by tests/e2e/test_feast_store.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from feedstack.core.errors import ConfigError
from feedstack.features.definitions import View
from feedstack.features.rows import FeatureRows, pylist

# Feast's ``value_text`` column per feature dtype: what feast.infra.online_stores.helpers
# .extract_text_and_num returns (str() of a number, the string itself, None for lists), without
# its per-value type dispatch (a third of the online write time for user rows). Pinned against
# Feast's own function by tests/e2e/test_feast_store.py.
VALUE_TEXT: dict[str, Callable[[Any], str | None]] = {
    "float32": lambda val: str(val.float_val),
    "int64": lambda val: str(val.int64_val),
    "string": lambda val: val.string_val,
    "float32_list": lambda val: None,
    "string_list": lambda val: None,
}


def value_protos(view: View, fr: FeatureRows) -> list[list[Any]]:
    """One list of feast ValueProtos per feature, in the view's feature order. Byte-identical
    to Feast's own Arrow->proto conversion (pinned by a test)."""
    from feast.protos.feast.types.Value_pb2 import FloatList, StringList
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    out: list[list[Any]] = []
    for f in view.features:
        col = fr.columns[f.name]
        if f.dtype.endswith("_list"):
            col = pylist(col)
        if f.dtype == "float32":
            out.append([ValueProto(float_val=x) for x in np.asarray(col, np.float32).tolist()])
        elif f.dtype == "int64":
            out.append([ValueProto(int64_val=x) for x in np.asarray(col, np.int64).tolist()])
        elif f.dtype == "string":
            out.append([ValueProto(string_val=str(x)) for x in col])
        elif f.dtype == "float32_list":
            out.append(
                [
                    ValueProto(float_list_val=FloatList(val=np.asarray(x, np.float32).tolist()))
                    for x in col
                ]
            )
        elif f.dtype == "string_list":
            out.append(
                [ValueProto(string_list_val=StringList(val=[str(s) for s in x])) for x in col]
            )
        else:  # pragma: no cover - definitions.py only has the five dtypes
            raise ConfigError(f"feature {view.name}.{f.name}: unknown dtype {f.dtype!r}")
    return out


def micros(as_of_s: np.ndarray[Any, Any]) -> list[int]:
    """As-of times in whole microseconds, rounded as FeatureRows.to_arrow rounds them."""
    return [int(u) for u in np.round(np.asarray(as_of_s, np.float64) * 1e6).astype(np.int64)]


def sqlite_seconds(ts: datetime) -> int:
    """The integer Feast's SQLite store writes for an event time: the naive-UTC datetime
    through its registered adapter ``int(dt.timestamp())`` (local-time interpretation)."""
    return int(ts.astimezone(UTC).replace(tzinfo=None).timestamp())


def sqlite_as_of(raw: Any) -> float:
    """Feast's reading of that integer (``datetime.fromtimestamp`` then UTC), in seconds."""
    return datetime.fromtimestamp(int(raw)).replace(tzinfo=UTC).timestamp()


def decode_value(raw: bytes | None) -> Any:
    """A serialized feast ValueProto -> the Python value ``get_online_features`` returns."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    if not raw:
        return None
    v = ValueProto()
    v.ParseFromString(raw)
    kind = v.WhichOneof("val")
    if kind is None:
        return None
    value = getattr(v, kind)
    return list(value.val) if kind.endswith("_list_val") else value
