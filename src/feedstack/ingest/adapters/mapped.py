"""Any CSV or Parquet table, one event per row, through a column mapping given as options.

    type=click  map.user_id=uid  map.article_id=item  map.event_time=ts  time_unit=s
    const.region=eu  (a fixed value for every row)

Every required field of the event type must be mapped or constant (``event_id`` is derived from
the row's values when not mapped; ``publish_time`` / ``signup_time`` default to the event time).
Problems with the mapping or a file raise InputError naming the option; a row whose values cannot
be converted becomes an error record naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedstack.core.errors import InputError
from feedstack.core.events import EVENT_TYPES
from feedstack.ingest.adapters import tables
from feedstack.ingest.adapters.base import Adapter, Options, check_files, stable_hash
from feedstack.ingest.records import RawRecord

NAME = "mapped"
_TIME_FIELDS = frozenset({"event_time", "publish_time", "signup_time"})
_INT_FIELDS = frozenset({"position", "dwell_ms"})
_MAY_BE_EMPTY = frozenset({"title", "text"})  # plain str in the schema; every id needs a value
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Spec:
    type: str
    columns: dict[str, str]  # event field -> source column
    consts: dict[str, Any]  # event field -> value, already converted
    required: frozenset[str]
    time_unit: str  # s | ms | us | iso
    zone: tzinfo | None  # applied to times without an offset; None: such times are errors
    list_sep: str


def _fields(event_type: str) -> dict[str, bool]:
    """Field name -> required, for the fields a mapping may fill."""
    model = EVENT_TYPES[event_type]
    return {
        name: info.is_required()
        for name, info in model.model_fields.items()
        if name not in ("type", "schema_version")
    }


def _zone(options: Options) -> tzinfo | None:
    name = options.get("timezone")
    if name is None:
        return None
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"{NAME}: option timezone={name!r} is not a known time zone") from None


def _split_options(event_type: str, options: Options) -> tuple[dict[str, str], dict[str, str]]:
    """(field -> column from map.*, field -> text from const.*), checked against the event type."""
    fields = _fields(event_type)
    columns: dict[str, str] = {}
    consts: dict[str, str] = {}
    for key, value in options.items():
        kind, _, name = key.partition(".")
        if kind not in ("map", "const"):
            continue
        if name not in fields:
            valid = ", ".join(fields)
            raise InputError(f"{NAME}: option {key}: {event_type} has no field {name!r} ({valid})")
        (columns if kind == "map" else consts)[name] = value
    for name in sorted(columns.keys() & consts.keys()):
        raise InputError(f"{NAME}: options map.{name} and const.{name} both given; keep one")
    given = columns.keys() | consts.keys()
    # An article is published, and a user signs up, at the event's own time unless told otherwise.
    implied = {"event_id"} | ({"publish_time", "signup_time"} if "event_time" in given else set())
    for name, required in fields.items():
        if required and name not in given | implied:
            hint = f"map.{name}=<column> (or const.{name}=<value>)"
            raise InputError(f"{NAME}: type={event_type} needs option {hint}")
    return columns, consts


def build_spec(options: Options) -> Spec:
    event_type = options.get("type")
    if event_type is None or event_type not in EVENT_TYPES:
        valid = ", ".join(EVENT_TYPES)
        raise InputError(f"{NAME}: option type={event_type!r} must be one of: {valid}")
    unit = options.get("time_unit", "iso")
    if unit not in (*_UNIT_US, "iso"):
        raise InputError(f"{NAME}: option time_unit={unit!r} must be one of: s, ms, us, iso")
    list_sep = options.get("list_sep", " ")
    if not list_sep:
        raise InputError(f"{NAME}: option list_sep must not be empty")
    columns, const_text = _split_options(event_type, options)
    required = frozenset(n for n, r in _fields(event_type).items() if r)
    spec = Spec(event_type, columns, {}, required, unit, _zone(options), list_sep)
    for name, text in const_text.items():
        try:
            spec.consts[name] = convert_value(spec, name, text)
        except ValueError as exc:
            raise InputError(f"{NAME}: option const.{name}={text!r}: {exc}") from None
    return spec


def _time(spec: Spec, value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif spec.time_unit == "iso":
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {value!r}") from None
    else:
        per_unit = _UNIT_US[spec.time_unit]
        text = str(value).strip()
        if isinstance(value, int) or text.lstrip("-").isdigit():
            # Integer arithmetic: a float would lose microseconds of a ms/us epoch time.
            return _EPOCH + timedelta(microseconds=int(text) * per_unit)
        try:
            return _EPOCH + timedelta(microseconds=round(float(text) * per_unit))
        except ValueError:
            raise ValueError(f"not a Unix time in {spec.time_unit}: {value!r}") from None
    if parsed.tzinfo is None:
        if spec.zone is None:
            raise ValueError(f"{value!s} has no UTC offset (set option timezone=... to assume one)")
        parsed = parsed.replace(tzinfo=spec.zone)
    return parsed


def convert_value(spec: Spec, name: str, value: Any) -> Any:
    """One source value as the event field wants it; ValueError says why it cannot be."""
    try:
        return _convert(spec, name, value)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"out of range: {value!r}") from exc


def _convert(spec: Spec, name: str, value: Any) -> Any:
    if name in _TIME_FIELDS:
        return _time(spec, value)
    if name in _INT_FIELDS:
        try:
            number = value if isinstance(value, int) else float(value)
        except ValueError:
            raise ValueError(f"not an integer: {value!r}") from None
        if number != int(number):
            raise ValueError(f"not an integer: {value!r}")
        return int(number)
    if name == "item_ids":
        items = value if isinstance(value, list) else str(value).split(spec.list_sep)
        return [str(item).strip() for item in items if str(item).strip()]
    return value if isinstance(value, str) else str(value)


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, list):
        return "\x1e".join(value)
    return str(value)


def convert_row(spec: Spec, row: dict[str, Any]) -> dict[str, Any] | tuple[str, str]:
    payload: dict[str, Any] = {"type": spec.type, **spec.consts}
    for name, column in spec.columns.items():
        value = row.get(column)
        if isinstance(value, str) and name in _MAY_BE_EMPTY:
            payload[name] = value
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            if name in spec.required:
                return name, f"empty value in column {column!r}"
            continue
        try:
            payload[name] = convert_value(spec, name, value)
        except ValueError as exc:
            return name, f"column {column!r}: {exc}"
    for name in ("publish_time", "signup_time"):
        if name in spec.required and name not in payload:
            payload[name] = payload["event_time"]
    if "event_id" not in payload:
        key = (f"{k}={_canonical(v)}" for k, v in sorted(payload.items()))
        payload["event_id"] = f"{NAME}:{spec.type}:{stable_hash(*key)}"
    return payload


def _records(paths: list[Path], spec: Spec, parquet: list[bool], sep: str) -> Iterator[RawRecord]:
    wanted = sorted(set(spec.columns.values()))
    for path, is_parquet in zip(paths, parquet, strict=True):
        for number, row, raw in tables.rows(path, parquet=is_parquet, delimiter=sep, wanted=wanted):
            result = row if isinstance(row, tuple) else convert_row(spec, row)
            if isinstance(result, tuple):
                yield RawRecord(str(path), number, None, raw=raw, error=result)
            else:
                yield RawRecord(str(path), number, result)


def open_mapped(paths: list[Path], options: Options) -> Iterator[RawRecord]:
    if not paths:
        raise InputError(f"{NAME}: give at least one CSV or Parquet file")
    spec = build_spec(options)
    fmt = options.get("format")
    if fmt not in (None, "csv", "parquet"):
        raise InputError(f"{NAME}: option format={fmt!r} must be csv or parquet")
    sep = options.get("delimiter", ",")
    sep = "\t" if sep in ("tab", "\\t") else sep
    if len(sep) != 1:
        raise InputError(f"{NAME}: option delimiter={sep!r} must be one character (or tab)")
    parquet = [tables.is_parquet(p, fmt) for p in paths]
    for path, is_parquet in zip(paths, parquet, strict=True):
        check_files([path], text=not is_parquet)
        present = tables.columns(path, parquet=is_parquet, delimiter=sep)
        for name, column in spec.columns.items():
            if column not in present:
                raise InputError(
                    f"{path}: option map.{name}={column!r} names no column; columns: "
                    + ", ".join(present)
                )
    return _records(paths, spec, parquet, sep)


ADAPTER = Adapter(
    name=NAME,
    summary="any CSV or Parquet table, one event per row, through a column mapping",
    options={
        "type": "event type of every row (required): " + ", ".join(EVENT_TYPES),
        "map.": "map.<field>=<column>: take the event field from this column",
        "const.": "const.<field>=<value>: the same value for every row",
        "time_unit": "how time columns are written: s, ms, us (Unix epoch) or iso (default)",
        "timezone": "zone for times without an offset, e.g. UTC (default: such times are errors)",
        "format": "csv or parquet (default: from the file suffix, .parquet/.pq)",
        "delimiter": "CSV field separator, one character or tab (default ,)",
        "list_sep": "separator of item_ids inside one CSV cell (default a space)",
    },
    open=open_mapped,
)
