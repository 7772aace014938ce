"""MovieLens ratings as implicit feedback: every rating (>= ``min_rating``) is a click.

Formats, detected from the first line: ``u.data`` (ML-100K, tab separated), ``ratings.dat``
(ML-1M/10M, ``::``), ``ratings.csv`` (ML-20M/25M/latest, header ``userId,movieId,...``). Titles and
genres come from ``u.item`` / ``movies.dat`` / ``movies.csv`` when one sits beside the ratings file
(the first genre is the topic), else the title is ``movie <id>`` and the topic ``unknown``.

Times: a user's ``signup_time`` and a movie's ``publish_time`` are the earliest kept rating of that
user / movie, over all given files. That takes one extra pass over the ratings, but it means no
click is ever older than its user or its article, which point-in-time joins rely on (the files are
sorted by user, not by time, so "first in the file" would not do).

Ids: user ``u<userId>``, article ``m<movieId>``; event ids ``movielens:{kind}:{key}``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from feedstack.core.errors import InputError
from feedstack.ingest.adapters.base import (
    Adapter,
    Line,
    Options,
    bad,
    check_files,
    event,
    from_unix,
    option_float,
    option_label,
    read_lines,
)
from feedstack.ingest.adapters.payloads import article_published, click, user_profile
from feedstack.ingest.records import RawRecord

NAME = "movielens"

# ML-100K's u.genre, in flag order; used when u.genre itself is not beside u.item.
_ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
_MAX_UNIX_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime can hold
# Metadata files for each ratings format, first match wins. ML-100K and ML-1M metadata is Latin-1.
_META = {"tab": ("u.item",), "dat": ("movies.dat",), "csv": ("movies.csv",)}


@dataclass(frozen=True, slots=True)
class Rating:
    user: str
    item: str
    rating: float
    ts: int


@dataclass(frozen=True, slots=True)
class Movie:
    movie_id: str
    title: str
    genres: tuple[str, ...]


def detect(first_line: str) -> str:
    if "::" in first_line:
        return "dat"
    if "\t" in first_line:
        return "tab"
    return "csv"


def parse_rating(text: str, fmt: str) -> Rating | tuple[str, str]:
    sep = {"dat": "::", "tab": "\t", "csv": ","}[fmt]
    fields = text.split(sep)
    if len(fields) != 4:
        return "line", f"expected 4 {sep!r}-separated fields, got {len(fields)}"
    user, item, rating, ts = (f.strip() for f in fields)
    for name, value in (("user_id", user), ("item_id", item)):
        if not (value.isascii() and value.isdigit()):
            return name, f"not an integer id: {value!r}"
    try:
        score = float(rating)
    except ValueError:
        return "rating", f"not a number: {rating!r}"
    if not (ts.isascii() and ts.isdigit()) or int(ts) > _MAX_UNIX_S:
        return "timestamp", f"not a Unix time in seconds: {ts!r}"
    return Rating(user, item, score, int(ts))


def _first_line(path: Path) -> str:
    for line in read_lines(path):
        return line.text or ""
    return ""


def _ratings(path: Path) -> Iterator[tuple[Line, Rating | tuple[str, str]]]:
    fmt = detect(_first_line(path))
    for line in read_lines(path):
        if line.text is None:
            yield line, ("line", "not valid UTF-8")
        elif not (fmt == "csv" and line.number == 1 and line.text.startswith("userId")):
            yield line, parse_rating(line.text, fmt)


def _meta_path(path: Path) -> Path | None:
    for name in _META[detect(_first_line(path))]:
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def _parse_movie(text: str, name: str, genres: list[str]) -> Movie | tuple[str, str]:
    if name == "u.item":
        f = text.split("|")
        if len(f) < 5 + len(genres):
            return "line", f"expected {5 + len(genres)} '|'-separated fields, got {len(f)}"
        flags = f[5 : 5 + len(genres)]
        picked = tuple(g for g, on in zip(genres, flags, strict=True) if on == "1")
        f = [f[0], f[1], "|".join(picked)]
    elif name == "movies.dat":
        f = text.split("::")
    else:
        f = next(csv.reader([text]), [])
    if len(f) != 3:
        return "line", f"expected 3 fields (movieId, title, genres), got {len(f)}"
    if not (f[0].strip().isascii() and f[0].strip().isdigit()):
        return "movie_id", f"not an integer id: {f[0]!r}"
    kept = tuple(g for g in f[2].split("|") if g and g != "(no genres listed)")
    return Movie(f[0].strip(), f[1], kept)


def load_movies(path: Path) -> tuple[dict[str, Movie], list[RawRecord]]:
    """Movie metadata by id, and an error record per bad line (those movies fall back to stubs)."""
    genres = _ML100K_GENRES
    if path.name == "u.item":
        try:
            text = path.with_name("u.genre").read_text("latin-1")
            genres = [t.split("|")[0] for t in text.splitlines() if t.strip()]
        except OSError:
            pass  # no u.genre beside u.item: the ML-100K list above is the same
    movies: dict[str, Movie] = {}
    errors: list[RawRecord] = []
    for line in read_lines(path, fallback_encoding="latin-1"):
        text = line.text or ""  # never None: Latin-1 decodes any byte
        if path.name == "movies.csv" and line.number == 1 and text.startswith("movieId"):
            continue
        parsed = _parse_movie(text, path.name, genres)
        if isinstance(parsed, Movie):
            movies[parsed.movie_id] = parsed
        else:
            errors.append(bad(path, line, *parsed))
    return movies, errors


def _first_times(paths: list[Path], min_rating: float) -> tuple[dict[str, int], dict[str, int]]:
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    for path in paths:
        for _, r in _ratings(path):
            if isinstance(r, Rating) and r.rating >= min_rating:
                users[r.user] = min(r.ts, users.get(r.user, r.ts))
                items[r.item] = min(r.ts, items.get(r.item, r.ts))
    return users, items


def _records(paths: list[Path], min_rating: float, region: str) -> Iterator[RawRecord]:
    movies: dict[str, Movie] = {}
    for path in paths:
        meta = _meta_path(path)
        if meta is not None:
            found, errors = load_movies(meta)
            yield from errors
            movies.update(found)
    user_first, item_first = _first_times(paths, min_rating)
    users_done: set[str] = set()
    items_done: set[str] = set()
    for path in paths:
        for line, r in _ratings(path):
            if not isinstance(r, Rating):
                yield bad(path, line, *r)
                continue
            if r.rating < min_rating:
                continue
            uid, aid = f"u{r.user}", f"m{r.item}"
            if r.user not in users_done:
                users_done.add(r.user)
                signup = from_unix(user_first[r.user])
                payload = user_profile(f"{NAME}:user:{r.user}", uid, region, signup)
                yield event(path, line.number, payload)
            if r.item not in items_done:
                items_done.add(r.item)
                movie = movies.get(r.item, Movie(r.item, f"movie {r.item}", ()))
                payload = article_published(
                    f"{NAME}:article:{r.item}",
                    aid,
                    title=movie.title,
                    text=", ".join(movie.genres),
                    topic=movie.genres[0][:64] if movie.genres else "unknown",
                    region=region,
                    published=from_unix(item_first[r.item]),
                )
                yield event(path, line.number, payload)
            event_id = f"{NAME}:click:{r.user}:{r.item}:{r.ts}"
            yield event(path, line.number, click(event_id, from_unix(r.ts), uid, aid))


def open_movielens(paths: list[Path], options: Options) -> Iterator[RawRecord]:
    if not paths:
        raise InputError(f"{NAME}: give at least one ratings file")
    check_files(paths)
    for path in paths:
        meta = _meta_path(path)
        if meta is not None:
            check_files([meta])
    min_rating = option_float(NAME, options, "min_rating", 0.0)
    region = option_label(NAME, options, "region", "global")
    return _records(paths, min_rating, region)


ADAPTER = Adapter(
    name=NAME,
    summary="MovieLens u.data / ratings.dat / ratings.csv: each rating is a click",
    options={
        "min_rating": "keep ratings >= this as clicks (default 0: every rating, implicit feedback)",
        "region": "region of every user and article (default global)",
    },
    open=open_movielens,
)
