"""The candidate cache's byte formats: ``FSC2`` (compact, written today) and ``FSC1`` (read only).

``FSC2`` | u32 header length | header JSON | zlib(body). The header names the candidate-model
version, the build time, the source and feature names, ``n``, the *catalog* the ids index and
how each column is coded. The body: ids as uint16 (uint32 past 65,535 articles) indices into
the catalog, the source index (uint8), then the first-stage score and every feature column,
each in the cheapest of these codes (the encoder picks per list and column, generically: it
knows nothing of what a column means):

- ``const``: every row has the same float32 (bits in the header), 0 bytes a row;
- ``int``: finite integers within 256 (1 byte) or 65,536 (2 bytes) of the smallest: exact;
- ``mul``: another (earlier, not ``mul``) column times one float32 (a score divided by the user's
  best, a count relative to the largest): 0 bytes a row, exact up to that column's code;
- ``q``: affine quantization to ``bits`` bits (``lo + code x step``, the top codes mark NaN,
  +inf and -inf): the only lossy code; the error is at most ``step / 2``.

A *catalog* is one version's article ids in a fixed order (``FSK1`` | NUL-joined UTF-8 ids); its
id is a hash of the ids, so a reader never resolves an index against another catalog. It is
stored once per catalog next to the lists (backends do it) and held in memory by readers.

``FSC1`` (the first format: float32 scores and features, UTF-8 ids) still decodes: entries a
previous build wrote stay readable until the next build replaces them. Anything else (another
magic, a torn entry, a missing catalog) is a DataError: the server answers from its fallback.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from feedstack.core.errors import DataError

MAGIC_V1 = b"FSC1"
MAGIC_V2 = b"FSC2"
CATALOG_MAGIC = b"FSK2"
QUANT_BITS = 8  # bits of a quantized column (``q`` code)
_HEAD = struct.Struct("<4sI")
_F32, _U32 = struct.Struct("<f"), struct.Struct("<I")
_SPECIAL = 3  # top codes of a ``q`` column: NaN, +inf, -inf
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Catalog:
    """One version's article ids in a fixed order (lists store indices into it), optionally the
    lists' source and feature names (``schema``: then an entry need not repeat them) and
    *shared tables*: a feature's value for every article as one group of users sees it (e.g.
    trending per region), so a column equal to its group's table costs an entry nothing."""

    ids: tuple[str, ...]
    schema: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    tables: Mapping[str, F32] = field(default_factory=dict)  # "group/feature" -> [len(ids)]
    id: str = field(default="", init=False)
    _array: npt.NDArray[np.object_] = field(init=False, repr=False)
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for item in self.ids:
            if "\x00" in item:
                raise DataError(f"candidate id {item!r}: contains NUL")
        for name, table in self.tables.items():
            if table.shape != (len(self.ids),) or table.dtype != np.float32:
                raise DataError(f"catalog table {name!r}: {table.shape} {table.dtype}")
        object.__setattr__(self, "id", hashlib.blake2b(self._body(), digest_size=8).hexdigest())
        object.__setattr__(self, "_array", np.array(self.ids, dtype=object))
        object.__setattr__(self, "_index", {a: i for i, a in enumerate(self.ids)})

    @classmethod
    def of(
        cls,
        ids: Sequence[str],
        schema: tuple[Sequence[str], Sequence[str]] | None = None,
        tables: Mapping[str, F32] | None = None,
    ) -> Catalog:
        sch = None if schema is None else (tuple(schema[0]), tuple(schema[1]))
        return cls(tuple(ids), sch, dict(tables or {}))

    def __len__(self) -> int:
        return len(self.ids)

    def table(self, group: str | None, feature: str) -> F32 | None:
        return None if group is None else self.tables.get(f"{group}/{feature}")

    def indices(self, items: Sequence[str]) -> npt.NDArray[np.int64]:
        try:
            return np.fromiter((self._index[a] for a in items), np.int64, len(items))
        except KeyError as exc:
            raise DataError(f"candidate {exc.args[0]!r} is not in catalog {self.id}") from None

    def take(self, idx: npt.NDArray[Any]) -> list[str]:
        if idx.size and int(idx.max()) >= len(self.ids):
            raise DataError(f"candidate cache entry: an index past catalog {self.id}")
        out: list[str] = self._array.take(idx).tolist()
        return out

    def _body(self) -> bytes:
        names = sorted(self.tables)
        head = orjson.dumps(
            {"n": len(self.ids), "schema": self.schema and list(self.schema), "tables": names}
        )
        return b"".join(
            (
                struct.pack("<I", len(head)),
                head,
                b"".join(np.ascontiguousarray(self.tables[t], "<f4").tobytes() for t in names),
                "\x00".join(self.ids).encode(),
            )
        )

    def to_bytes(self) -> bytes:
        return CATALOG_MAGIC + self._body()

    @classmethod
    def from_bytes(cls, raw: bytes, expected_id: str) -> Catalog:
        if raw[:4] != CATALOG_MAGIC:
            raise DataError(f"catalog {expected_id}: unknown format {raw[:4]!r}")
        try:
            (head_len,) = struct.unpack_from("<I", raw, 4)
            h = orjson.loads(raw[8 : 8 + head_len])
            n, at = int(h["n"]), 8 + head_len
            tables = {}
            for name in h["tables"]:
                tables[str(name)] = np.frombuffer(raw, "<f4", n, at).astype(np.float32)
                at += 4 * n
            body = raw[at:].decode()
            schema = h["schema"]
            cat = cls.of(
                body.split("\x00") if n else [],
                None if schema is None else (schema[0], schema[1]),
                tables,
            )
        except (ValueError, TypeError, KeyError, IndexError, struct.error, UnicodeDecodeError):
            raise DataError(f"catalog {expected_id}: corrupt") from None
        if cat.id != expected_id:
            raise DataError(f"catalog {expected_id}: content hashes to {cat.id}")
        return cat


Resolve = Callable[[str], Catalog]  # catalog id -> the catalog (DataError when unknown)


def catalog_id(raw: bytes) -> str | None:
    """The catalog an ``FSC2`` entry indexes (None for FSC1); DataError if unreadable."""
    head = _header(raw)
    return None if head is None else str(head["catalog"])


# ----------------------------------------------------------------------------- columns
def _bits(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


def _from_bits(b: int) -> np.float32:
    return np.float32(_F32.unpack(_U32.pack(b))[0])


def _code(
    col: F32, done: list[tuple[dict[str, Any], F32]], bits: int, shared: F32 | None = None
) -> tuple[dict[str, Any], bytes]:
    """The cheapest code for ``col`` given the columns already coded (their specs, originals)
    and, when the catalog has one for this column and group, the shared table's values."""
    n = col.size
    if n == 0 or np.all(col.view(np.uint32) == col.view(np.uint32)[0]):
        return {"c": "const", "b": _bits(col[0]) if n else 0}, b""
    if shared is not None and np.array_equal(col.view(np.uint32), shared.view(np.uint32)):
        return {"c": "lookup"}, b""
    finite = np.isfinite(col)
    if finite.all() and np.all(col == np.round(col)):
        lo, hi = float(col.min()), float(col.max())
        if hi - lo < 2**16 and abs(lo) < 2**31:
            width = 1 if hi - lo < 2**8 else 2
            data = (col - lo).astype(np.uint8 if width == 1 else "<u2").tobytes()
            return {"c": "int", "lo": int(lo), "w": width}, data
    if finite.all():
        for j, (spec, orig) in enumerate(done):
            if spec["c"] in ("mul", "const"):
                continue
            r = int(np.argmax(np.abs(orig)))
            if orig[r] == 0 or not np.isfinite(orig).all():
                continue
            a = np.float32(col[r] / orig[r])
            if np.allclose(col, (orig * a).astype(np.float32), rtol=1e-5, atol=1e-7):
                return {"c": "mul", "of": j, "b": _bits(float(a))}, b""
    top = (1 << bits) - 1 - _SPECIAL
    vals = col[finite]
    qlo = np.float32(vals.min()) if vals.size else np.float32(0.0)
    qhi = np.float32(vals.max()) if vals.size else np.float32(0.0)
    step = np.float32((qhi - qlo) / top) if qhi > qlo else np.float32(0.0)
    codes = np.zeros(n, np.int64)
    if step > 0:
        codes[finite] = np.clip(np.rint((vals - qlo) / step), 0, top).astype(np.int64)
    codes[np.isnan(col)] = top + 1
    codes[col == np.inf] = top + 2
    codes[col == -np.inf] = top + 3
    # A column in list order (the first-stage score) compresses to almost nothing as steps.
    d = np.diff(codes)
    delta = n > 1 and bool(np.all(d <= 0) or np.all(d >= 0))
    if delta:
        codes = np.concatenate([codes[:1], d]) % (1 << bits)
    spec = {"c": "q", "bits": bits, "lo": _bits(float(qlo)), "step": _bits(float(step)), "d": delta}
    return spec, _pack(codes, bits)


def _pack(codes: npt.NDArray[np.int64], bits: int) -> bytes:
    if bits == 8:
        return codes.astype(np.uint8).tobytes()
    as_bits = ((codes[:, None] >> np.arange(bits - 1, -1, -1)) & 1).astype(np.uint8)
    return np.packbits(as_bits.ravel()).tobytes()


def _unpack(raw: bytes, at: int, n: int, bits: int) -> tuple[npt.NDArray[Any], int]:
    size = math.ceil(n * bits / 8)
    buf = np.frombuffer(raw, np.uint8, size, at)
    if bits == 8:
        return buf, at + size
    b = np.unpackbits(buf)[: n * bits].reshape(n, bits).astype(np.int64)
    return b @ (1 << np.arange(bits - 1, -1, -1)), at + size


def _decode_column(
    spec: dict[str, Any], body: bytes, at: int, n: int, done: list[F32], shared: F32 | None = None
) -> tuple[F32, int]:
    kind = spec["c"]
    if kind == "lookup":
        if shared is None:
            raise DataError("candidate cache entry: a shared column its catalog does not have")
        return shared, at
    if kind == "const":
        return np.full(n, _from_bits(int(spec["b"])), np.float32), at
    if kind == "int":
        width = int(spec["w"])
        if width not in (1, 2):
            raise DataError(f"candidate cache entry: int width {width}")
        raw = np.frombuffer(body, np.uint8 if width == 1 else "<u2", n, at)
        return (raw.astype(np.float64) + int(spec["lo"])).astype(np.float32), at + width * n
    if kind == "mul":
        j = int(spec["of"])
        if not 0 <= j < len(done):
            raise DataError(f"candidate cache entry: column refers to column {j}")
        return (done[j] * _from_bits(int(spec["b"]))).astype(np.float32), at
    if kind == "q":
        bits = int(spec["bits"])
        if not 2 <= bits <= 8:
            raise DataError(f"candidate cache entry: {bits}-bit column")
        codes, at = _unpack(body, at, n, bits)
        if spec.get("d"):
            codes = np.cumsum(codes) % (1 << bits)
        top = (1 << bits) - 1 - _SPECIAL
        lo, step = _from_bits(int(spec["lo"])), _from_bits(int(spec["step"]))
        out = (lo + codes.astype(np.float32) * step).astype(np.float32)
        if codes.max(initial=0) > top:
            out[codes == top + 1] = np.nan
            out[codes == top + 2] = np.inf
            out[codes == top + 3] = -np.inf
        return out, at
    raise DataError(f"candidate cache entry: unknown column code {kind!r}")


_KINDS = ("const", "int", "mul", "q", "lookup")


def _spec_bytes(spec: dict[str, Any]) -> bytes:
    kind = spec["c"]
    code = bytes([_KINDS.index(kind)])
    if kind == "const":
        return code + struct.pack("<I", spec["b"])
    if kind == "int":
        return code + struct.pack("<iB", spec["lo"], spec["w"])
    if kind == "mul":
        return code + struct.pack("<HI", spec["of"], spec["b"])
    if kind == "q":
        flags = spec["bits"] | (0x80 if spec.get("d") else 0)
        return code + struct.pack("<BII", flags, spec["lo"], spec["step"])
    return code


def _read_spec(body: bytes, at: int) -> tuple[dict[str, Any], int]:
    kind = _KINDS[body[at]]
    at += 1
    if kind == "const":
        (b,) = struct.unpack_from("<I", body, at)
        return {"c": kind, "b": b}, at + 4
    if kind == "int":
        lo, w = struct.unpack_from("<iB", body, at)
        return {"c": kind, "lo": lo, "w": w}, at + 5
    if kind == "mul":
        of, b = struct.unpack_from("<HI", body, at)
        return {"c": kind, "of": of, "b": b}, at + 6
    if kind == "q":
        flags, lo, step = struct.unpack_from("<BII", body, at)
        spec = {"c": kind, "bits": flags & 0x7F, "lo": lo, "step": step, "d": bool(flags & 0x80)}
        return spec, at + 9
    return {"c": kind}, at


# ----------------------------------------------------------------------------- entries
def encode_v2(
    version: str,
    built_at_s: float,
    items: Sequence[str],
    scores: F32,
    sources: npt.NDArray[np.uint8],
    source_names: Sequence[str],
    features: F32,
    feature_names: Sequence[str],
    catalog: Catalog,
    group: str | None = None,
    bits: int = QUANT_BITS,
) -> bytes:
    n = len(items)
    idx = catalog.indices(items)
    wide = len(catalog) > 2**16
    done: list[tuple[dict[str, Any], F32]] = []
    columns = [np.asarray(scores, np.float32)] + [
        np.ascontiguousarray(features[:, j], dtype=np.float32) for j in range(features.shape[1])
    ]
    specs: list[bytes] = []
    data: list[bytes] = []
    for j, col in enumerate(columns):
        table = None if j == 0 else catalog.table(group, feature_names[j - 1])
        spec, raw = _code(col, done, bits, None if table is None else table[idx])
        done.append((spec, col))
        specs.append(_spec_bytes(spec))
        data.append(raw)
    head: dict[str, Any] = {
        "version": version,
        "built_at_s": built_at_s,
        "n": n,
        "catalog": catalog.id,
    }
    if group is not None:
        head["group"] = group
    if catalog.schema != (tuple(source_names), tuple(feature_names)):
        head["sources"], head["features"] = list(source_names), list(feature_names)
    body = b"".join(
        (
            *specs,
            idx.astype("<u4" if wide else "<u2").tobytes(),
            sources.astype(np.uint8).tobytes(),
            *data,
        )
    )
    header = orjson.dumps(head)
    return _HEAD.pack(MAGIC_V2, len(header)) + header + zlib.compress(body, 9)


def _header(raw: bytes) -> dict[str, Any] | None:
    if len(raw) < _HEAD.size:
        raise DataError("candidate cache entry: truncated")
    magic, head_len = _HEAD.unpack_from(raw)
    if magic == MAGIC_V1:
        return None
    if magic != MAGIC_V2:
        raise DataError(f"candidate cache entry: unknown format {magic!r}")
    try:
        h: dict[str, Any] = orjson.loads(raw[_HEAD.size : _HEAD.size + head_len])
    except orjson.JSONDecodeError:
        raise DataError("candidate cache entry: corrupt header") from None
    if not isinstance(h, dict) or "catalog" not in h:
        raise DataError("candidate cache entry: corrupt header")
    return h


@dataclass(frozen=True)
class Decoded:
    """The fields of an entry (the CandidateList is built by the caller)."""

    version: str
    built_at_s: float
    items: list[str]
    scores: F32
    sources: npt.NDArray[np.uint8]
    source_names: tuple[str, ...]
    features: F32
    feature_names: tuple[str, ...]
    catalog: Catalog | None
    group: str | None = None


def decode_any(raw: bytes, resolve: Resolve | None) -> Decoded:
    """Either format; DataError for anything that is not a whole, consistent entry."""
    try:
        head = _header(raw)
        if head is None:
            return _decode_v1(raw)
        if resolve is None:
            raise DataError("candidate cache entry: FSC2 needs its catalog")
        return _decode_v2(raw, head, resolve)
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, struct.error, UnicodeDecodeError,
            zlib.error, OverflowError) as exc:  # fmt: skip
        raise DataError(f"candidate cache entry: corrupt ({type(exc).__name__})") from None


def _decode_v2(raw: bytes, h: dict[str, Any], resolve: Resolve) -> Decoded:
    head_len = _HEAD.unpack_from(raw)[1]
    body = zlib.decompress(raw[_HEAD.size + head_len :])
    catalog = resolve(str(h["catalog"]))
    if "features" in h:
        source_names = tuple(str(x) for x in h["sources"])
        names = tuple(str(x) for x in h["features"])
    elif catalog.schema is not None:
        source_names, names = catalog.schema
    else:
        raise DataError("candidate cache entry: no feature names here or in its catalog")
    n = int(h["n"])
    group = h.get("group")
    if n < 0:
        raise DataError(f"candidate cache entry: n = {n}")
    at = 0
    specs = []
    for _ in range(len(names) + 1):
        spec, at = _read_spec(body, at)
        specs.append(spec)
    width = 4 if len(catalog) > 2**16 else 2
    idx = np.frombuffer(body, "<u2" if width == 2 else "<u4", n, at).astype(np.int64)
    at += width * n
    items = catalog.take(idx)
    sources = np.frombuffer(body, np.uint8, n, at).copy()
    at += n
    done: list[F32] = []
    for j, spec in enumerate(specs):
        table = None if j == 0 else catalog.table(group, names[j - 1])
        col, at = _decode_column(spec, body, at, n, done, None if table is None else table[idx])
        done.append(col)
    if at != len(body):
        raise DataError(f"candidate cache entry: {len(body) - at} bytes left over")
    features = np.stack(done[1:], axis=1) if names else np.zeros((n, 0), np.float32)
    return Decoded(
        str(h["version"]),
        float(h["built_at_s"]),
        items,
        done[0],
        sources,
        source_names,
        np.ascontiguousarray(features, dtype=np.float32),
        names,
        catalog,
        None if group is None else str(group),
    )


def _decode_v1(raw: bytes) -> Decoded:
    """The first format (float32 everything, UTF-8 ids): read, never written."""
    _, head_len = _HEAD.unpack_from(raw)
    at = _HEAD.size
    h: dict[str, Any] = orjson.loads(raw[at : at + head_len])
    at += head_len
    n, f = int(h["n"]), len(h["features"])
    if n < 0 or len(raw) < at + n * (5 + 4 * f):
        raise DataError(f"candidate cache entry: truncated ({len(raw)} bytes for {n} items)")
    scores = np.frombuffer(raw, "<f4", n, at).astype(np.float32)
    at += 4 * n
    sources = np.frombuffer(raw, np.uint8, n, at).copy()
    at += n
    features = np.frombuffer(raw, "<f4", n * f, at).astype(np.float32).reshape(n, f)
    at += 4 * n * f
    items = raw[at:].decode().split("\x00") if n else []
    if len(items) != n:
        raise DataError(f"candidate cache entry: {len(items)} ids for {n} candidates")
    return Decoded(
        str(h["version"]),
        float(h["built_at_s"]),
        items,
        scores,
        sources,
        tuple(str(x) for x in h["sources"]),
        features,
        tuple(str(x) for x in h["features"]),
        None,
    )


def round_trip_columns(columns: Sequence[F32], bits: int = QUANT_BITS) -> list[F32]:
    """The columns (first-stage score first, then each feature) as an ``FSC2`` entry returns
    them: the same codes and decoding as ``encode_v2``/``decode_any`` (a test checks), without
    the ids. Lets training measure a ranker on the values serving will read."""
    done: list[tuple[dict[str, Any], F32]] = []
    back: list[F32] = []
    for col in columns:
        col = np.ascontiguousarray(col, dtype=np.float32)
        spec, data = _code(col, done, bits)
        done.append((spec, col))
        value, _ = _decode_column(spec, data, 0, col.size, back)
        back.append(value)
    return back
