"""Dataset adapters: known answers on hand-written fixtures, and the adapter contract.

Fixtures live in tests/fixtures/datasets/ (a few lines each, one bad line per format). Gowalla is
read from ../shared/data/gowalla when present, never copied into the repo.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedstack.core.errors import InputError
from feedstack.core.events import Click, Event, parse_event
from feedstack.ingest.adapters import ADAPTERS, open_adapter
from feedstack.ingest.records import RawRecord

DATA = Path(__file__).parents[1] / "fixtures" / "datasets"
# Where FEEDSTACK_GOWALLA says (as bench/gowalla.py), else shared/data/gowalla beside the checkout
# or beside a folder above it (a worktree or a CI clone may sit deeper than the main checkout).
_BESIDE = [p / "shared" / "data" / "gowalla" for p in Path(__file__).resolve().parents[3:]]
GOWALLA = Path(
    os.environ.get("FEEDSTACK_GOWALLA") or next((p for p in _BESIDE if p.is_dir()), _BESIDE[0])
)


CLICK_MAP = {
    "type": "click",
    "map.user_id": "uid",
    "map.article_id": "item",
    "map.event_time": "ts",
    "map.position": "pos",
    "map.request_id": "req",
    "time_unit": "s",
}
IMPRESSION_MAP = {
    "type": "impression",
    "map.request_id": "rid",
    "map.user_id": "user",
    "map.item_ids": "items",
    "map.event_time": "at",
    "const.model_version": "v1",
    "delimiter": "tab",
    "list_sep": "|",
    "timezone": "UTC",
}

# (adapter, files, options, expected counts by event type, expected number of error records)
CASES: dict[str, tuple[str, list[Path], dict[str, str], dict[str, int]]] = {
    "ml-100k": (
        "movielens",
        [DATA / "movielens/ml-100k/u.data"],
        {},
        {"user_profile": 4, "article_published": 4, "click": 5, "error": 2},
    ),
    "ml-1m": (
        "movielens",
        [DATA / "movielens/ml-1m/ratings.dat"],
        {},
        {"user_profile": 2, "article_published": 2, "click": 3, "error": 1},
    ),
    "ml-latest": (
        "movielens",
        [DATA / "movielens/ml-latest/ratings.csv"],
        {},
        {"user_profile": 2, "article_published": 2, "click": 3, "error": 1},
    ),
    "mind": (
        "mind",
        [DATA / "mind/behaviors.tsv"],
        {},
        {"article_published": 6, "user_profile": 3, "impression": 4, "click": 7, "error": 2},
    ),
    "lightgcn": (
        "lightgcn",
        [DATA / "lightgcn/train.txt"],
        {},
        {"user_profile": 4, "article_published": 5, "click": 6, "error": 1},
    ),
    "mapped-csv": (
        "mapped",
        [DATA / "mapped/clicks.csv"],
        CLICK_MAP,
        {"click": 2, "error": 2},
    ),
    "mapped-tsv": (
        "mapped",
        [DATA / "mapped/impressions.tsv"],
        IMPRESSION_MAP,
        {"impression": 2, "error": 1},
    ),
}


def run(name: str, paths: list[Path], options: dict[str, str] | None = None) -> list[RawRecord]:
    return list(open_adapter(name, paths, options or {}))


def events(records: list[RawRecord]) -> list[Event]:
    out = []
    for r in records:
        if r.error is None:
            assert isinstance(r.payload, dict)
            out.append(parse_event(r.payload))
    return out


def by_id(records: list[RawRecord]) -> dict[str, Event]:
    return {e.event_id: e for e in events(records)}


def counts(records: list[RawRecord]) -> dict[str, int]:
    return dict(Counter("error" if r.error else str(_payload(r)["type"]) for r in records))


def _payload(r: RawRecord) -> dict[str, Any]:
    assert isinstance(r.payload, dict)
    return r.payload


# -- the contract, for every fixture ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_counts_are_known_and_good_lines_validate(case: str) -> None:
    name, paths, options, expected = CASES[case]
    records = run(name, paths, options)
    assert counts(records) == expected
    assert len(events(records)) == sum(n for k, n in expected.items() if k != "error")


@pytest.mark.parametrize("case", CASES)
def test_ids_are_deterministic_and_unique(case: str) -> None:
    name, paths, options, _ = CASES[case]
    first, second = run(name, paths, options), run(name, paths, options)
    assert first == second  # same ids, payloads, line numbers: re-ingesting is a no-op
    ids = [e.event_id for e in events(first)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES)
def test_bad_lines_become_error_records(case: str) -> None:
    name, paths, options, _ = CASES[case]
    for r in run(name, paths, options):
        if r.error is not None:
            field, reason = r.error
            assert field and reason
            assert r.payload is None and r.raw and r.line >= 1
            assert Path(r.source).is_file()


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] != "mapped"])
def test_users_and_articles_exist_before_their_clicks(case: str) -> None:
    """Point-in-time joins rely on it: nothing is used before it exists, in time or in order.

    (``mapped`` is left out: it emits exactly the rows it is given.)
    """
    name, paths, options, _ = CASES[case]
    signup: dict[str, datetime] = {}
    published: dict[str, datetime] = {}
    for e in events(run(name, paths, options)):
        if e.type == "user_profile":
            signup[e.user_id] = e.signup_time
        elif e.type == "article_published":
            published[e.article_id] = e.publish_time
        elif e.type == "click":
            assert signup[e.user_id] <= e.event_time
            assert published[e.article_id] <= e.event_time
        elif e.type == "impression":
            assert signup[e.user_id] <= e.event_time
            assert all(published[a] <= e.event_time for a in e.item_ids)


def test_registry_lists_every_adapter() -> None:
    assert sorted(ADAPTERS) == ["lightgcn", "mapped", "mind", "movielens"]
    assert all(a.name == key and a.summary and a.options for key, a in ADAPTERS.items())


def test_unknown_adapter_lists_the_valid_names() -> None:
    with pytest.raises(InputError, match="lightgcn, mapped, mind, movielens"):
        open_adapter("netflix", [DATA / "lightgcn/train.txt"], {})


def test_unknown_option_is_named() -> None:
    with pytest.raises(InputError, match=r"'min_ratin'.*min_rating"):
        open_adapter("movielens", [DATA / "movielens/ml-1m/ratings.dat"], {"min_ratin": "4"})


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_missing_directory_and_binary_files_raise_before_yielding(
    name: str, tmp_path: Path
) -> None:
    options = CLICK_MAP if name == "mapped" else {}
    good = DATA / ("mapped/clicks.csv" if name == "mapped" else "lightgcn/train.txt")
    binary = tmp_path / "behaviors.tsv"
    binary.write_bytes(b"PK\x03\x04\x00\x00zip bytes")
    (tmp_path / "news.tsv").write_text("")
    for path, message in [
        (tmp_path / "nope.txt", "no such file"),
        (tmp_path, "is a directory"),
        (binary, "binary"),
    ]:
        with pytest.raises(InputError, match=message) as info:
            open_adapter(name, [good, path], options)  # never iterated
        assert str(path) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("0 1\n")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="cannot be read"):
            open_adapter("lightgcn", [path], {})
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("name", ["movielens", "mind", "lightgcn"])
def test_a_line_that_is_not_utf8_is_an_error_record(name: str, tmp_path: Path) -> None:
    good = {
        "movielens": "1::2::5::978300760\n",
        "mind": "1\tU1\t11/15/2019 8:55:22 AM\t\tN1-1\n",
        "lightgcn": "0 1\n",
    }[name]
    path = tmp_path / "behaviors.tsv"
    path.write_bytes(good.encode() + b"\xff\xfe bad bytes\n" + good.encode())
    (tmp_path / "news.tsv").write_text("")
    records = run(name, [path])
    errors = [r for r in records if r.error]
    assert [(r.line, r.error) for r in errors] == [(2, ("line", "not valid UTF-8"))]
    assert errors[0].raw is not None and "\\xff" in errors[0].raw


# -- movielens -------------------------------------------------------------------------------


def test_movielens_times_titles_and_topics() -> None:
    got = by_id(run("movielens", [DATA / "movielens/ml-100k/u.data"]))
    user = got["movielens:user:196"]
    assert user.type == "user_profile" and user.user_id == "u196"
    # signup = the user's earliest rating (line 3), not the first one in the file (line 1)
    assert user.signup_time == datetime.fromtimestamp(881250000, UTC)
    movie = got["movielens:article:377"]
    assert movie.type == "article_published"
    assert (movie.article_id, movie.title, movie.topic) == (
        "m377",
        "Misérables, Les (1995)",
        "Drama",
    )
    assert movie.text == "Drama, War"  # u.item is Latin-1; the genre flags give the topic
    stub = got["movielens:article:51"]
    assert stub.type == "article_published" and (stub.title, stub.topic) == ("movie 51", "unknown")
    click = got["movielens:click:196:242:881250949"]
    assert click.type == "click" and (click.user_id, click.article_id) == ("u196", "m242")


def test_movielens_bad_metadata_line_is_reported_and_movie_falls_back() -> None:
    records = run("movielens", [DATA / "movielens/ml-100k/u.data"])
    meta_errors = [r for r in records if r.error and r.source.endswith("u.item")]
    assert [(r.line, r.error and r.error[0]) for r in meta_errors] == [(4, "line")]


def test_movielens_csv_quoted_titles_and_no_genres() -> None:
    got = by_id(run("movielens", [DATA / "movielens/ml-latest/ratings.csv"]))
    movie = got["movielens:article:3"]
    assert movie.type == "article_published" and movie.title == "Grumpier Old Men, The (1995)"
    assert movie.topic == "Comedy"


def test_movielens_min_rating_keeps_only_liked_items() -> None:
    records = run("movielens", [DATA / "movielens/ml-100k/u.data"], {"min_rating": "3"})
    assert counts(records) == {"user_profile": 2, "article_published": 2, "click": 3, "error": 2}
    with pytest.raises(InputError, match="min_rating='high'"):
        open_adapter("movielens", [DATA / "movielens/ml-100k/u.data"], {"min_rating": "high"})


def test_movielens_region_option() -> None:
    got = events(run("movielens", [DATA / "movielens/ml-1m/ratings.dat"], {"region": "eu"}))
    assert {e.region for e in got if e.type in ("user_profile", "article_published")} == {"eu"}


# -- mind ------------------------------------------------------------------------------------


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_mind_impressions_clicks_and_positions() -> None:
    got = events(run("mind", [DATA / "mind/behaviors.tsv"]))
    impressions = {e.request_id: e for e in got if e.type == "impression"}
    assert {k: v.item_ids for k, v in impressions.items()} == {
        "1": ["N3", "N4", "N2"],
        "2": ["N4", "N3"],
        "3": ["N4", "N5"],
        "5": ["N3", "N4"],  # the test split has no labels: an impression without clicks
    }
    assert {e.model_version for e in impressions.values()} == {"mind"}
    assert impressions["1"].event_time == _t("2019-11-15 08:55:22")
    clicks = [e for e in got if isinstance(e, Click) and e.request_id is not None]
    assert [(c.request_id, c.position, c.article_id, c.user_id) for c in clicks] == [
        ("1", 0, "N3", "U1"),
        ("1", 2, "N2", "U1"),
        ("2", 1, "N3", "U2"),
        ("3", 0, "N4", "U1"),
    ]
    for c in clicks:
        assert c.request_id is not None and c.position is not None
        assert impressions[c.request_id].item_ids[c.position] == c.article_id
        assert c.event_time == impressions[c.request_id].event_time


def test_mind_history_is_clicked_once_before_the_first_impression() -> None:
    got = events(run("mind", [DATA / "mind/behaviors.tsv"]))
    history = [e for e in got if isinstance(e, Click) and e.request_id is None]
    # U1's first impression is line 3 (8:00 AM on the 14th), though line 1 comes first in the file
    assert [(c.user_id, c.article_id, c.event_time) for c in history] == [
        ("U1", "N1", _t("2019-11-14 07:59:59")),
        ("U1", "N2", _t("2019-11-14 07:59:59")),
        ("U3", "N1", _t("2019-11-16 12:59:59")),
    ]
    assert all(c.position is None for c in history)


def test_mind_articles_publish_when_first_seen() -> None:
    got = by_id(run("mind", [DATA / "mind/behaviors.tsv"]))
    times = {e.article_id: e.publish_time for e in got.values() if e.type == "article_published"}
    assert times == {
        "N1": _t("2019-11-14 07:59:59"),  # first seen as U1's history click
        "N2": _t("2019-11-14 07:59:59"),
        "N3": _t("2019-11-14 23:00:00"),
        "N4": _t("2019-11-14 08:00:00"),
        "N5": _t("2019-11-14 08:00:00"),  # not in news.tsv: a stub
        "N9": _t("2019-10-12 00:00:00"),  # never seen: the fixed early time
    }
    n3, n5 = got["mind:article:N3"], got["mind:article:N5"]
    assert n3.type == "article_published" and n5.type == "article_published"
    assert (n3.title, n3.topic, n3.text, n3.region) == ("Title three", "finance", "", "global")
    assert (n5.title, n5.topic) == ("N5", "unknown")


def test_mind_bad_lines_name_the_field() -> None:
    errors = [r for r in run("mind", [DATA / "mind/behaviors.tsv"]) if r.error]
    assert [(Path(r.source).name, r.line, r.error and r.error[0]) for r in errors] == [
        ("news.tsv", 4, "line"),
        ("behaviors.tsv", 4, "time"),
    ]


def test_mind_split_prefixes_request_ids() -> None:
    got = events(run("mind", [DATA / "mind/behaviors.tsv"], {"split": "dev"}))
    requests = {e.request_id for e in got if e.type in ("impression", "click") and e.request_id}
    assert requests == {"dev-1", "dev-2", "dev-3", "dev-5"}


def test_mind_needs_news_beside_behaviors(tmp_path: Path) -> None:
    behaviors = tmp_path / "behaviors.tsv"
    behaviors.write_text("1\tU1\t11/15/2019 8:55:22 AM\t\tN1-1\n")
    with pytest.raises(InputError, match=r"news\.tsv"):
        open_adapter("mind", [behaviors], {})


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("1\tU1\t11/15/2019 8:55:22 AM\t\tN1-2", "impressions"),
        ("1\tU1\t11/15/2019 8:55:22 AM\t\t", "impressions"),
        ("1\t\t11/15/2019 8:55:22 AM\t\tN1-1", "user_id"),
        ("1\tU1\t11/15/2019 8:55:22 AM\tN1-1", "line"),
    ],
)
def test_mind_line_errors(line: str, field: str, tmp_path: Path) -> None:
    (tmp_path / "behaviors.tsv").write_text(line + "\n")
    (tmp_path / "news.tsv").write_text("")
    [record] = run("mind", [tmp_path / "behaviors.tsv"])
    assert record.error is not None and record.error[0] == field


# -- lightgcn --------------------------------------------------------------------------------


def test_lightgcn_synthetic_times_follow_the_documented_rule() -> None:
    start = datetime(2021, 6, 1, tzinfo=UTC)
    got = events(run("lightgcn", [DATA / "lightgcn/train.txt"], {"start": start.isoformat()}))
    clicks = [(e.user_id, e.article_id, e.event_time) for e in got if e.type == "click"]
    s = timedelta(seconds=1)
    assert clicks == [
        ("u0", "a0", start + s),
        ("u0", "a1", start + 2 * s),
        ("u0", "a2", start + 3 * s),
        ("u1", "a2", start + s),
        ("u1", "a3", start + 2 * s),
        ("u4", "a5", start + s),
    ]
    assert {e.event_time for e in got if e.type != "click"} == {start}


def test_lightgcn_start_needs_an_offset() -> None:
    with pytest.raises(InputError, match="start"):
        open_adapter("lightgcn", [DATA / "lightgcn/train.txt"], {"start": "2021-06-01T00:00:00"})


gowalla = pytest.mark.skipif(not GOWALLA.is_dir(), reason="shared Gowalla data not present")


@gowalla
def test_lightgcn_reads_the_first_1000_lines_of_gowalla() -> None:
    with (GOWALLA / "train.txt").open() as f:
        lines = [line.split() for line in islice(f, 1000)]
    records = list(
        takewhile(lambda r: r.line <= 1000, open_adapter("lightgcn", [GOWALLA / "train.txt"], {}))
    )
    got = events(records)
    assert len(got) == len(records)  # no error records
    c = Counter(e.type for e in got)
    assert c["click"] == sum(len(t) - 1 for t in lines)
    assert c["user_profile"] == 1000
    assert c["article_published"] == len({i for t in lines for i in t[1:]})
    assert (got[0].type, got[0].event_id) == ("user_profile", "lightgcn:user:0")


@gowalla
def test_lightgcn_gowalla_train_has_810128_clicks() -> None:
    began = time.perf_counter()
    c = Counter(_payload(r)["type"] for r in open_adapter("lightgcn", [GOWALLA / "train.txt"], {}))
    assert c == {"click": 810_128, "user_profile": 29_858, "article_published": 40_981}
    assert time.perf_counter() - began < 30  # ~2 s on a laptop; a budget, not a benchmark


# -- mapped ----------------------------------------------------------------------------------


def test_mapped_converts_rows() -> None:
    got = events(run("mapped", [DATA / "mapped/clicks.csv"], CLICK_MAP))
    alice, bob = got
    assert alice.type == "click" and bob.type == "click"
    assert (alice.user_id, alice.article_id, alice.position, alice.request_id) == (
        "alice",
        "n1",
        0,
        "r1",
    )
    assert alice.event_time == datetime.fromtimestamp(1_700_000_000, UTC)
    assert (bob.position, bob.request_id) == (None, None)  # empty optional cells are omitted
    assert alice.event_id.startswith("mapped:click:")


def test_mapped_row_errors_name_the_field() -> None:
    errors = [r for r in run("mapped", [DATA / "mapped/clicks.csv"], CLICK_MAP) if r.error]
    assert [(r.line, r.error and r.error[0]) for r in errors] == [
        (4, "event_time"),
        (5, "article_id"),
    ]
    assert errors[0].raw == "carol,n3,17000x,1,r2"


def test_mapped_impressions_split_lists_and_assume_the_time_zone() -> None:
    got = events(run("mapped", [DATA / "mapped/impressions.tsv"], IMPRESSION_MAP))
    assert [(e.item_ids, e.event_time) for e in got if e.type == "impression"] == [
        (["n1", "n2", "n3"], _t("2024-01-01 10:00:00")),
        (["n3"], _t("2024-01-01 11:00:00")),
    ]
    no_zone = {k: v for k, v in IMPRESSION_MAP.items() if k != "timezone"}
    errors = [r.error for r in run("mapped", [DATA / "mapped/impressions.tsv"], no_zone) if r.error]
    assert errors[0] is not None and "no UTC offset" in errors[0][1]


def _without(key: str) -> dict[str, str]:
    return {k: v for k, v in CLICK_MAP.items() if k != key}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"type": "click", "map.user_id": "uid", "map.event_time": "ts"}, "map.article_id"),
        ({**CLICK_MAP, "type": "purchase"}, "type='purchase'"),
        ({**CLICK_MAP, "map.colour": "uid"}, "map.colour"),
        ({**CLICK_MAP, "map.article_id": "missing"}, "map.article_id='missing'"),
        ({**CLICK_MAP, "const.user_id": "x"}, "map.user_id and const.user_id"),
        ({**CLICK_MAP, "time_unit": "h"}, "time_unit='h'"),
        ({**_without("map.position"), "const.position": "first"}, "const.position='first'"),
        ({**CLICK_MAP, "timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_mapped_bad_options_name_the_option(options: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        open_adapter("mapped", [DATA / "mapped/clicks.csv"], options)


def test_mapped_parquet_with_constants_and_ms_times(tmp_path: Path) -> None:
    path = tmp_path / "profiles.parquet"
    table = pa.table(
        {"who": ["u1", "u2", None], "joined": [1_700_000_000_123, 1_700_000_000_456, 1]}
    )
    pq.write_table(table, path)
    options = {
        "type": "user_profile",
        "map.user_id": "who",
        "map.event_time": "joined",
        "time_unit": "ms",
        "const.region": "eu",
    }
    records = run("mapped", [path], options)
    got = events(records)
    assert [(e.user_id, e.region, e.event_time) for e in got if e.type == "user_profile"] == [
        ("u1", "eu", datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)),
        ("u2", "eu", datetime(2023, 11, 14, 22, 13, 20, 456_000, tzinfo=UTC)),
    ]
    assert all(e.type == "user_profile" and e.signup_time == e.event_time for e in got)
    assert [(r.line, r.error) for r in records if r.error] == [
        (3, ("user_id", "empty value in column 'who'"))
    ]


def test_mapped_parquet_timestamps_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "imps.parquet"
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    pq.write_table(
        pa.table({"rid": ["r1"], "uid": [7], "items": [["a", "b"]], "at": [at]}),
        path,
    )
    options = {
        "type": "impression",
        "map.request_id": "rid",
        "map.user_id": "uid",
        "map.item_ids": "items",
        "map.event_time": "at",
        "const.model_version": "v1",
    }
    [e] = events(run("mapped", [path], options))
    assert e.type == "impression" and (e.user_id, e.item_ids, e.event_time) == ("7", ["a", "b"], at)


def test_mapped_not_parquet_raises(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("uid,item\n")
    with pytest.raises(InputError, match="Parquet"):
        open_adapter("mapped", [path], CLICK_MAP)


def test_mapped_articles_may_have_empty_text_but_not_empty_ids(tmp_path: Path) -> None:
    path = tmp_path / "articles.csv"
    path.write_text(
        "id,headline,body,section,at\n"
        "a1,Rates rise,,economy,2024-03-01T08:00:00+01:00\n"
        ",No id,body,economy,2024-03-01T09:00:00+01:00\n"
    )
    options = {
        "type": "article_published",
        "map.article_id": "id",
        "map.title": "headline",
        "map.text": "body",
        "map.topic": "section",
        "map.event_time": "at",
        "const.region": "eu",
    }
    records = run("mapped", [path], options)
    [article] = events(records)
    assert article.type == "article_published"
    assert (article.text, article.publish_time) == ("", _t("2024-03-01 07:00:00"))
    assert [r.error for r in records if r.error] == [("article_id", "empty value in column 'id'")]
