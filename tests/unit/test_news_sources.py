"""The news candidate sources on known-answer data: co-visitation, content, trending.

Each source must: put the provable item first, score items it never saw at fit time where that
makes sense (content, trending), give a user the same scores alone as in a batch, and round-trip
through save/load exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.candidates.base import CandidateSource
from feedstack.models.candidates.content import ContentSource, ContentTrainer
from feedstack.models.candidates.covisit import CovisitSource, CovisitTrainer, pairs
from feedstack.models.candidates.trending import (
    GLOBAL,
    UNKNOWN,
    Exposures,
    TrendingSource,
    TrendingTrainer,
)
from feedstack.models.interactions import InteractionData
from feedstack.train.history import ClickHistory

H = 3600.0


def history_of(rows: list[dict[int, float]], n_items: int) -> sp.csr_matrix:
    data, r, c = [], [], []
    for i, row in enumerate(rows):
        for item, w in row.items():
            r.append(i)
            c.append(item)
            data.append(w)
    return sp.csr_matrix((np.asarray(data, np.float32), (r, c)), shape=(len(rows), n_items))


# -- co-visitation ------------------------------------------------------------------------------


def covisit_data() -> InteractionData:
    """Item 0 is co-clicked with 1 by three users, with 2 by one; user 4 clicks 0 and 3 two
    days apart (outside the window); item 5 is clicked by nobody together with anything."""
    users = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    items = [0, 1, 0, 1, 1, 0, 0, 2, 0, 3, 5]
    times = [0, 60, 100, 200, 300, 400, 500, 700, 1_000, 1_000 + 48 * H, 10]
    return InteractionData.from_pairs(users, items, 6, 6, times=times)


def test_covisit_top_item_and_window() -> None:
    data = covisit_data()
    src = CovisitTrainer(window_s=6 * H).fit(data)
    items, scores = src.recommend(np.array([9]), history_of([{0: 1.0}], 6), k=6)
    assert items[0, 0] == 1  # co-clicked with 0 three times
    assert items[0, 1] == 2
    by_item = dict(zip(items[0].tolist(), scores[0].tolist(), strict=True))
    assert by_item[3] == 0.0  # 48 h apart: not a pair
    assert by_item[5] == 0.0


def test_covisit_pairs_respect_lag_and_window() -> None:
    left, right, at = pairs(
        np.array([0, 0, 0, 1]),
        np.array([10, 11, 12, 10]),
        np.array([0.0, 5.0, 9.0, 1.0]),
        window_s=6.0,
        max_lag=1,
    )
    # user 0: (10, 11) at 5 and (11, 12) at 9; (10, 12) is lag 2; user 1 has one click.
    assert sorted(zip(left.tolist(), right.tolist(), at.tolist(), strict=True)) == [
        (10, 11, 5.0),
        (11, 12, 9.0),
    ]


def test_covisit_counts_decay_and_stream_in() -> None:
    src = CovisitTrainer(tau_s=H).empty(4, 0.0)
    src.add_pairs(np.array([0]), np.array([1]), np.array([0.0]), now_s=0.0)
    assert src.counts[0, 1] == pytest.approx(1.0)
    src.add_pairs(np.array([0]), np.array([2]), np.array([H]), now_s=H)
    assert src.counts[0, 1] == pytest.approx(np.exp(-1.0))  # one time constant later
    assert src.counts[2, 0] == pytest.approx(1.0)  # both directions
    with pytest.raises(InputError, match="after now"):
        src.add_pairs(np.array([0]), np.array([1]), np.array([5 * H]), now_s=2 * H)
    src.add_items(2)  # articles published later
    assert src.n_items == 6 and src.counts.shape == (6, 6)
    assert src.scores(np.array([0]), history_of([{0: 1.0}], 6)).shape == (1, 6)


def test_covisit_needs_times() -> None:
    with pytest.raises(InputError, match="times"):
        CovisitTrainer().fit(InteractionData.from_pairs([0], [0], 1, 1))


# -- content ------------------------------------------------------------------------------------

TEXTS = [
    "Senate passes budget bill after long vote on taxes and spending",
    "Parliament debates election reform and voting rules for the senate",
    "Striker scores twice as the football club wins the league final",
    "Coach praises goalkeeper after the club wins a penalty shootout",
    "New vaccine trial shows strong immune response in patients",
    "Hospital nurses warn about vaccine supply and patient wait times",
    "Chip maker unveils faster processor for laptops and phones",
    "Startup raises funding for an AI chip that runs on phones",
]


@pytest.fixture(scope="module")
def content() -> ContentSource:
    return ContentTrainer(dims=6, min_df=1, max_df=0.9).fit(TEXTS)


def test_content_finds_the_near_duplicate_of_a_fresh_article(content: ContentSource) -> None:
    src = ContentSource.from_arrays(
        content.name, content.n_items, "", content.params(), content.arrays()
    )
    # Published after fitting, never clicked by anyone: a near-copy of article 2 and a story
    # about something else.
    src.add_items(
        [
            "Striker scores twice as the football club wins the cup final",
            "Vaccine nurses patients hospital immune trial",
        ]
    )
    assert src.n_items == len(TEXTS) + 2
    history = history_of([{2: 1.0}], src.n_items)
    feats = src.feature_scores(np.array([0]), history)
    nearest = feats["content_max"][0].copy()
    nearest[2] = -np.inf  # the clicked article itself
    assert int(np.argmax(nearest)) == len(TEXTS)
    items, _ = src.recommend(np.array([0]), history, k=2, exclude=history)
    assert items[0, 0] in (len(TEXTS), 3)  # the near-copy or the other football story
    assert len(TEXTS) in items[0]


def test_content_user_without_history_scores_zero(content: ContentSource) -> None:
    feats = content.feature_scores(np.array([0]), sp.csr_matrix((1, content.n_items)))
    assert not feats["content"].any() and not feats["content_max"].any()


def test_content_rejects_a_corpus_without_shared_words() -> None:
    with pytest.raises(InputError, match="no word"):
        ContentTrainer(min_df=2).fit(["alpha beta", "gamma delta"])


# -- trending -----------------------------------------------------------------------------------


def trending() -> TrendingSource:
    """Region 0 ('eu'): item 1 got 10 clicks in the last hour, item 0 got 10 clicks 5 hours ago,
    item 2 got 3 clicks just now; item 3 is local to region 1; items are 6 h old except item 2."""
    now = 10 * H
    publish = np.array([now - 6 * H, now - 6 * H, now - 1 * H, now - 6 * H])
    item_region = np.array([GLOBAL, GLOBAL, GLOBAL, 1])
    user_region = np.array([0, 1, UNKNOWN])
    items = np.array([1] * 10 + [0] * 10 + [2] * 3 + [3] * 10)
    times = np.r_[np.full(10, now - 0.5 * H), np.full(10, now - 5 * H), np.full(13, now - 60)]
    regions = np.r_[np.zeros(23, np.int64), np.ones(10, np.int64)]
    clicks = Exposures(items, regions, times)
    shown = Exposures(np.repeat(items, 5), np.repeat(regions, 5), np.repeat(times, 5))
    return TrendingTrainer().fit(
        ("eu", "na"), publish, item_region, user_region, clicks, shown, now + 1
    )


def test_trending_ranks_the_velocity_leader_first() -> None:
    src = trending()
    history = sp.csr_matrix((3, 4), dtype=np.float32)
    items, _ = src.recommend(np.array([0, 1, 2]), history, k=4)
    assert items[0, 0] == 1  # region 0: the article clicked most in the last hour
    assert items[0, -1] == 3  # another region's local article
    assert items[1, 0] == 3  # region 1 trends its own article
    assert items[2, 0] == 3  # a cold user sees every region's trend
    feats = src.feature_scores(np.array([0]), history[:1])
    assert feats["trending_velocity"][0, 3] == 0.0  # region 0 never clicked it
    assert feats["trending_global"][0, 3] > 0.0
    assert 0.0 < feats["trending_ctr"][0, 1] < 1.0


def test_trending_serves_articles_published_after_fit() -> None:
    src = trending()
    now = src.as_of_s
    src.add_items(np.array([now - 60.0]), np.array([GLOBAL]))  # a minute old, no click yet
    src.set_user_regions(np.array([5]), np.array([0]))  # a new user in region 0
    history = sp.csr_matrix((1, src.n_items), dtype=np.float32)
    scores = src.scores(np.array([5]), history)[0]
    assert scores[4] > scores[0]  # fresher than a 6 h old story whose clicks faded
    src.observe(
        Exposures(np.array([4] * 20), np.zeros(20, np.int64), np.full(20, now + 60)),
        Exposures(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)),
        now + 120,
    )
    items, _ = src.recommend(np.array([5]), history, k=1)
    assert items[0, 0] == 4


# -- every news source --------------------------------------------------------------------------


def sources(content: ContentSource) -> list[tuple[CandidateSource, type[CandidateSource]]]:
    return [
        (CovisitTrainer(window_s=6 * H).fit(covisit_data()), CovisitSource),
        (content, ContentSource),
        (trending(), TrendingSource),
    ]


def test_save_load_round_trip_is_exact(content: ContentSource, tmp_path: Path) -> None:
    for source, cls in sources(content):
        n = source.n_items
        history = history_of([{0: 1.0, 1: 0.85}, {2: 1.0}, {}], n)
        users = np.array([0, 1, 2])
        source.save(tmp_path / source.name)
        loaded = cls.load(tmp_path / source.name)
        assert (loaded.name, loaded.n_items, loaded.params()) == (source.name, n, source.params())
        a, b = source.feature_scores(users, history), loaded.feature_scores(users, history)
        assert tuple(a) == source.feature_names
        for name in source.feature_names:
            assert a[name].dtype == np.float32 and a[name].shape == (3, n)
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{source.name}:{name}")


def test_batch_equals_single(content: ContentSource) -> None:
    for source, _ in sources(content):
        history = history_of([{0: 1.0, 1: 0.85}, {2: 1.0}, {}], source.n_items)
        users = np.array([0, 1, 2])
        batch = source.feature_scores(users, history)
        for row in range(3):
            single = source.feature_scores(users[row : row + 1], history[row])
            for name in source.feature_names:
                np.testing.assert_array_equal(single[name][0], batch[name][row])


# -- the history the sources are fed ------------------------------------------------------------


def test_history_is_the_recent_clicks_before_t_weighted_by_recency() -> None:
    clicks = ClickHistory.build(
        np.array([0, 0, 0, 1]), np.array([5, 6, 7, 5]), np.array([1.0, 2.0, 3.0, 1.0]), 8
    )
    rows = clicks.rows(np.array([0, 1, 2]), np.array([3.0, 3.0, 3.0])).toarray()
    d = clicks.decay
    np.testing.assert_allclose(rows[0], [0, 0, 0, 0, 0, d, 1.0, 0], rtol=1e-6)  # 7 is at t=3
    np.testing.assert_allclose(rows[1], [0, 0, 0, 0, 0, 1.0, 0, 0])
    assert not rows[2].any()
    short = ClickHistory(clicks.user, clicks.item, clicks.time_s, 8, length=1)
    assert short.rows(np.array([0]), np.array([9.0])).nnz == 1


# -- point in time ------------------------------------------------------------------------------


def test_replay_state_never_sees_a_later_event(tmp_path: Path) -> None:
    """Planting a burst of clicks after time b changes nothing the replay serves at b."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from feedstack.train.newslog import NewsLog
    from feedstack.train.replay import Replay
    from feedstack.world import WorldConfig, write_world

    write_world(WorldConfig(users=200, articles=80, days=0.5, seed=2), tmp_path, "parquet")
    table = pq.read_table(tmp_path / "events.parquet")
    log = NewsLog.from_table(table)
    b = float(np.floor((log.start_s + log.end_s) / 2 / 900) * 900)
    article, user = log.article_ids[-1], log.user_ids[0]
    burst = {c: [None] * 50 for c in table.column_names}
    burst.update(
        event_id=[f"planted-{i}" for i in range(50)],
        event_time=[int((b + 1 + i) * 1e6) for i in range(50)],
        type=["click"] * 50,
        schema_version=[1] * 50,
        user_id=[user] * 50,
        article_id=[article] * 50,
    )
    planted = pa.concat_tables([table, pa.table(burst, schema=table.schema)])
    states = []
    for t in (table, planted):
        replay_log = NewsLog.from_table(t)
        content = ContentTrainer(dims=4, min_df=1).fit(replay_log.texts)
        replay = Replay(replay_log, content, CovisitTrainer(), TrendingTrainer())
        replay.advance(b)
        users = np.arange(replay_log.n_users, dtype=np.int64)
        history = replay.histories(users)
        feats = {
            name: values
            for s in replay.sources
            for name, values in s.feature_scores(users, history).items()
        }
        items = np.arange(replay_log.n_items, dtype=np.int64)
        context = replay.context(users[:1]).features(np.zeros_like(items), items)
        states.append((history.toarray(), feats, context))
    (h0, f0, c0), (h1, f1, c1) = states
    np.testing.assert_array_equal(h0, h1)
    np.testing.assert_array_equal(c0, c1)
    for name in f0:
        np.testing.assert_array_equal(f0[name], f1[name], err_msg=name)
