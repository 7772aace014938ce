"""One contract suite for every candidate source, plus the blend and the interaction data.

Known-answer data after implicit's tests: a checkerboard where even users have every even item
and odd users every odd item, minus the diagonal. A personalized source must then put item u
first for user u: the one item of the user's parity that the user does not have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.candidates import load_source
from feedstack.models.candidates.als import ALSSource, ALSTrainer
from feedstack.models.candidates.base import CandidateSource, SourceTrainer
from feedstack.models.candidates.blend import Blend, BlendConfig
from feedstack.models.candidates.itemitem import ItemItemTrainer, top_right_singular_vectors
from feedstack.models.candidates.popular import PopularTrainer
from feedstack.models.interactions import InteractionData, read_lightgcn, split_per_user
from feedstack.models.kernels import top_k

N = 40


def checkerboard(n: int = N) -> InteractionData:
    u, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = (u % 2 == i % 2) & (u != i)
    return InteractionData.from_pairs(u[keep], i[keep], n, n)


# (trainer, personalized): every source in the package, small enough for a unit test.
TRAINERS: list[tuple[SourceTrainer, bool]] = [
    (PopularTrainer(), False),
    (ALSTrainer(factors=8, regularization=0.01, alpha=1.0, iterations=15, seed=3), True),
    (ItemItemTrainer(ideal_rank=8), True),
]


@pytest.fixture(scope="module")
def data() -> InteractionData:
    return checkerboard()


@pytest.fixture(scope="module", params=TRAINERS, ids=lambda p: p[0].name)
def fitted(request: pytest.FixtureRequest, data: InteractionData) -> tuple[CandidateSource, bool]:
    trainer, personalized = request.param
    return trainer.fit(data), personalized


def users_and_history(data: InteractionData, users: list[int]) -> tuple[np.ndarray, sp.csr_matrix]:
    idx = np.asarray(users, dtype=np.int64)
    return idx, data.matrix[idx]


def test_recommend_shapes_order_and_exclusion(
    fitted: tuple[CandidateSource, bool], data: InteractionData
) -> None:
    source, _ = fitted
    users, history = users_and_history(data, list(range(N)))
    items, scores = source.recommend(users, history, k=5, exclude=history)
    assert items.shape == scores.shape == (N, 5)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    for u in range(N):
        assert not set(items[u].tolist()) & set(history[u].indices.tolist())


def test_checkerboard_known_answer(
    fitted: tuple[CandidateSource, bool], data: InteractionData
) -> None:
    source, personalized = fitted
    if not personalized:
        pytest.skip("a non-personalized source has no per-user known answer here")
    users, history = users_and_history(data, list(range(N)))
    items, _ = source.recommend(users, history, k=1, exclude=history)
    np.testing.assert_array_equal(items[:, 0], np.arange(N))


def test_padding_when_fewer_items_than_k(
    fitted: tuple[CandidateSource, bool], data: InteractionData
) -> None:
    source, _ = fitted
    users, history = users_and_history(data, [0, 1])
    items, scores = source.recommend(users, history, k=N, exclude=history)
    n_left = N - history.getnnz(axis=1)
    for row, left in enumerate(n_left):
        assert (items[row, :left] >= 0).all() and (items[row, left:] == -1).all()
        assert np.isneginf(scores[row, left:]).all()


def test_batch_equals_single(fitted: tuple[CandidateSource, bool], data: InteractionData) -> None:
    source, _ = fitted
    users, history = users_and_history(data, [3, 8, 13, 30])
    batch = source.feature_scores(users, history)
    for row, _user in enumerate(users):
        single = source.feature_scores(users[row : row + 1], history[row])
        for name in source.feature_names:
            np.testing.assert_array_equal(single[name][0], batch[name][row])
    items, scores = source.recommend(users, history, k=6, exclude=history)
    one_items, one_scores = source.recommend(users[1:2], history[1], k=6, exclude=history[1])
    np.testing.assert_array_equal(one_items[0], items[1])
    np.testing.assert_array_equal(one_scores[0], scores[1])


def test_score_agrees_with_recommend(
    fitted: tuple[CandidateSource, bool], data: InteractionData
) -> None:
    source, _ = fitted
    users, history = users_and_history(data, [0, 5, 6])
    items, scores = source.recommend(users, history, k=4, exclude=history)
    np.testing.assert_array_equal(source.score(users, history, items), scores)
    padded = np.array([[-1, 0]] * 3, dtype=np.int32)
    assert np.isneginf(source.score(users, history, padded)[:, 0]).all()


def test_feature_scores_contract(
    fitted: tuple[CandidateSource, bool], data: InteractionData
) -> None:
    source, _ = fitted
    users, history = users_and_history(data, [1, 2])
    feats = source.feature_scores(users, history)
    assert tuple(feats) == source.feature_names
    assert source.feature_names[0] == source.name
    for value in feats.values():
        assert value.shape == (2, N) and value.dtype == np.float32


def test_unseen_user_scored_from_history(
    fitted: tuple[CandidateSource, bool], data: InteractionData
) -> None:
    source, personalized = fitted
    # A user who was not in the training data, with an even-item history.
    history = sp.csr_matrix(
        (np.ones(3, np.float32), ([0, 0, 0], [2, 4, 6])), shape=(1, N), dtype=np.float32
    )
    items, _ = source.recommend(np.array([N + 7]), history, k=3, exclude=history)
    if personalized:
        assert all(i % 2 == 0 for i in items[0])


def test_save_load_round_trip_is_exact(
    fitted: tuple[CandidateSource, bool], data: InteractionData, tmp_path: Path
) -> None:
    source, _ = fitted
    source.save(tmp_path / "src")
    loaded = load_source(tmp_path / "src")
    assert type(loaded) is type(source)
    assert (loaded.name, loaded.n_items, loaded.data_hash) == (
        source.name,
        source.n_items,
        source.data_hash,
    )
    assert loaded.params() == source.params()
    users, history = users_and_history(data, list(range(N)))
    a, b = source.feature_scores(users, history), loaded.feature_scores(users, history)
    for name in source.feature_names:
        np.testing.assert_array_equal(a[name], b[name])


def test_bad_history_shape_is_input_error(fitted: tuple[CandidateSource, bool]) -> None:
    source, _ = fitted
    with pytest.raises(InputError):
        source.recommend(np.array([0, 1]), sp.csr_matrix((1, N), dtype=np.float32), k=2)


def test_load_rejects_unknown_and_wrong_kind(tmp_path: Path, data: InteractionData) -> None:
    PopularTrainer().fit(data).save(tmp_path / "p")
    with pytest.raises(InputError, match="not 'als'"):
        ALSSource.load(tmp_path / "p")
    meta = (tmp_path / "p" / "source.json").read_text().replace('"popular"', '"nope"', 1)
    (tmp_path / "p" / "source.json").write_text(meta)
    with pytest.raises(InputError, match="unknown source kind"):
        load_source(tmp_path / "p")
    with pytest.raises(InputError):
        load_source(tmp_path / "missing")


def test_popular_orders_by_share() -> None:
    data = InteractionData.from_pairs([0, 1, 2, 0, 1, 0], [2, 2, 2, 0, 0, 1], 3, 4)
    src = PopularTrainer().fit(data)
    items, scores = src.recommend(np.array([0]), data.matrix[[0]], k=4)
    np.testing.assert_array_equal(items[0], [2, 0, 1, 3])
    np.testing.assert_allclose(scores[0], [3 / 6, 2 / 6, 1 / 6, 0.0])


def test_singular_vectors_match_exact_svd() -> None:
    rng = np.random.default_rng(1)
    m = sp.csr_matrix((rng.random((60, 45)) < 0.2).astype(np.float32))
    v = top_right_singular_vectors(m, rank=5, iterations=8, oversample=10, seed=0)
    _, _, vt = np.linalg.svd(m.toarray().astype(np.float64))
    # Same subspace: the projection of the exact vectors onto v keeps their length.
    proj = v.T.astype(np.float64) @ vt[:5].T
    np.testing.assert_allclose(np.linalg.norm(proj, axis=0), 1.0, atol=1e-3)


def test_top_k_ties_break_by_index_and_skip_excluded() -> None:
    scores = np.array([[1.0, 3.0, 3.0, -np.inf, 2.0]], dtype=np.float32)
    items, vals = top_k(scores, 5)
    np.testing.assert_array_equal(items[0], [1, 2, 4, 0, -1])
    np.testing.assert_array_equal(vals[0], [3, 3, 2, 1, -np.inf])


# -- the blend ----------------------------------------------------------------------------------


def test_blend_union_features_and_tags(data: InteractionData) -> None:
    sources = [trainer.fit(data) for trainer, _ in TRAINERS]
    blend = Blend(sources, BlendConfig(size=6, quotas={"popular": 2, "als": 3}, batch_users=7))
    users, history = users_and_history(data, list(range(N)))
    cands = blend.generate(users, history, exclude=history)
    assert cands.features.shape == (cands.n_rows, len(blend.feature_names))
    assert (cands.group_sizes() <= 6).all() and (cands.group_sizes() >= 3).all()
    assert cands.sources.min() > 0  # every candidate came from some source
    for s_i, source in enumerate(sources):
        # A candidate a source retrieved has a rank below that source's quota; the source's
        # feature is its score() of the candidate, whoever retrieved it.
        mine = (cands.sources >> s_i) & 1 == 1
        quota = blend.config.quota(source.name)
        assert (cands.feature(f"{source.name}_rank")[mine] < quota).all()
        assert (cands.feature(f"{source.name}_rank")[~mine] == quota).all()
        for u in (0, 9, 31):
            rows = slice(cands.indptr[u], cands.indptr[u + 1])
            want = source.score(users[u : u + 1], history[u], cands.items[rows][None, :])
            np.testing.assert_array_equal(cands.feature(source.name)[rows], want[0])
    b = cands.row_user()
    np.testing.assert_array_equal(cands.feature("history_length"), history.getnnz(axis=1)[b])
    # The personalized sources put the held-out diagonal item in every list.
    for u in range(N):
        assert u in cands.items[cands.indptr[u] : cands.indptr[u + 1]]
    # Same candidates whatever the batch size.
    again = Blend(sources, BlendConfig(size=6, quotas={"popular": 2, "als": 3}, batch_users=N))
    other = again.generate(users, history, exclude=history)
    np.testing.assert_array_equal(other.items, cands.items)
    np.testing.assert_array_equal(other.features, cands.features)


def test_blend_rejects_duplicate_names(data: InteractionData) -> None:
    src = PopularTrainer().fit(data)
    with pytest.raises(InputError):
        Blend([src, src], BlendConfig())


# -- interactions -------------------------------------------------------------------------------


def test_read_lightgcn_shares_id_space(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 1 2 3\n1 0\n2 4 4\n")
    (tmp_path / "test.txt").write_text("0 5\n3 1\n")
    train, test = read_lightgcn(tmp_path / "train.txt", tmp_path / "test.txt")
    assert train.matrix.shape == test.matrix.shape == (4, 6)
    assert train.nnz == 5  # the repeated 4 collapses
    assert test.matrix[3, 1] == 1.0


@pytest.mark.parametrize(
    "content, match",
    [("0 1 x\n", "not the LightGCN format"), ("", "no lines"), ("0 -1\n", "not the LightGCN")],
)
def test_read_lightgcn_rejects_bad_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_lightgcn(path)
    with pytest.raises(InputError, match="no such file"):
        read_lightgcn(tmp_path / "absent.txt")


def test_split_per_user_keeps_history_and_share() -> None:
    rng = np.random.default_rng(0)
    u = rng.integers(0, 50, 2000)
    i = rng.integers(0, 300, 2000)
    data = InteractionData.from_pairs(u, i, 50, 300)
    rest, held = split_per_user(data, 0.2, seed=4)
    assert rest.nnz + held.nnz == data.nnz
    assert (rest.matrix.multiply(held.matrix)).nnz == 0
    counts = data.user_counts()
    assert (rest.user_counts()[counts > 0] >= 1).all()
    np.testing.assert_array_equal(
        held.user_counts(), np.where(counts >= 2, np.clip(np.rint(0.2 * counts), 1, counts - 1), 0)
    )
    again, _ = split_per_user(data, 0.2, seed=4)
    assert again.data_hash() == rest.data_hash()


def test_split_with_times_holds_out_the_latest() -> None:
    data = InteractionData.from_pairs([0] * 5, [0, 1, 2, 3, 4], 1, 5, times=[5, 4, 3, 2, 1])
    _, held = split_per_user(data, 0.4)
    np.testing.assert_array_equal(held.matrix.indices, [0, 1])


def test_popular_fast_select_equals_full_scan() -> None:
    rng = np.random.default_rng(5)
    u, i = rng.integers(0, 30, 400), rng.integers(0, 25, 400) ** 2 % 25  # skewed popularity
    data = InteractionData.from_pairs(u, i, 30, 25)
    src = PopularTrainer().fit(data)
    users = np.arange(30)
    scores = src.scores(users, data.matrix)
    for k in (1, 5, 25):
        fast = src.select(scores, k, data.matrix)
        slow = CandidateSource.select(src, scores.copy(), k, data.matrix)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])


def test_source_audit_keeps_an_offered_source_only_for_what_it_alone_finds() -> None:
    from feedstack.train.source_audit import SourceAudit

    # Sources: trending (bit 0), als (bit 1), gfcf (bit 2). 10 clicks: trending finds 6, als
    # finds 3 of which 2 alone, gfcf finds 2 that others find too.
    audit = SourceAudit(("trending", "als", "gfcf"))
    bits = np.array([1, 1, 1, 1, 3 | 4, 1 | 4, 2, 2], dtype=np.uint32)
    audit.add(bits, 10, bits)
    kept = audit.decide(0.1)
    assert kept == ("trending", "als")
    table = audit.table(kept)
    assert table["als"] == {"recall": 0.3, "unique_recall": 0.2, "kept": True}
    assert table["gfcf"]["recall"] == 0.2 and table["gfcf"]["unique_recall"] == 0.0
    assert not table["gfcf"]["kept"]
    assert audit.decide(0.5) == ("trending",)  # the recipe's own source always stays
    rows = audit.rows_found_by(("trending",))
    assert rows.tolist() == [True, True, True, True, True, True, False, False]


@pytest.mark.parametrize("trainer", [TRAINERS[1][0], TRAINERS[2][0]], ids=["als", "gfcf"])
def test_items_added_after_fit_score_zero_and_leave_the_rest(
    trainer: SourceTrainer, data: InteractionData
) -> None:
    """A news model's offered sources meet articles published after training (candidate build)."""
    source = trainer.fit(data)
    users, history = users_and_history(data, [0, 1, 5])
    before = source.feature_scores(users, history)
    source.add_items(3)  # type: ignore[attr-defined]
    assert source.n_items == N + 3
    wide = sp.csr_matrix((history.data, history.indices, history.indptr), shape=(3, N + 3))
    after = source.feature_scores(users, wide)
    for name in source.feature_names:
        np.testing.assert_allclose(after[name][:, :N], before[name], rtol=1e-5, atol=1e-6)
        assert not after[name][:, N:].any()
