"""The batch job that fills the candidate cache: every known user's top candidates from a trained
model, with the first-stage ranking features the ranker reads (serve/pipeline.py). A news model
is served as below; an interactions model by ``InteractionsJob`` (whole histories, no age).

It serves each user exactly as the offline replay served a logged request (train/requests.py
``serve``): the user's recent-click history as of ``at_s``, the live articles minus what the user
read, the blend of the model's sources over them. So the cached features are the training
features of a request at ``at_s``; the server adds the context features as of request time.

Articles published after training are added to the sources (content embeds them from their text,
covisit and trending start them at zero), as the replay does. The model does not store its
article ids: the article index is the offline log's order (publication order), and the job checks
on a sample that the content embeddings still match the log's texts there, so a log whose order
changed under the model is refused rather than served wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.core.spec import load_spec
from feedstack.models.candidates.als import ALSSource
from feedstack.models.candidates.blend import Blend, BlendConfig, Candidates
from feedstack.models.candidates.content import ContentSource
from feedstack.models.candidates.covisit import CovisitSource
from feedstack.models.candidates.itemitem import ItemItemSource
from feedstack.models.candidates.trending import GLOBAL, UNKNOWN, TrendingSource
from feedstack.storage.candidate_cache import CandidateCache, CandidateList, open_candidate_cache
from feedstack.storage.eventlog import open_event_log
from feedstack.storage.offline import open_offline_store
from feedstack.train import artifacts
from feedstack.train.candidate_tables import build_catalog, user_group
from feedstack.train.clean_log import load_clean_log
from feedstack.train.history import ClickHistory
from feedstack.train.newslog import NewsLog

IntArray = npt.NDArray[np.int64]
Say = Callable[[str], None]
# Dense full-catalog scores per batch of users: about n_items x 4 bytes x (features + clicks)
# per user. This bounds one batch's working set.
BATCH_BYTES = 256 * 2**20


def extend_sources(model: artifacts.LoadedModel, log: NewsLog) -> int:
    """Add the log's articles the model has not seen to its sources; returns how many."""
    n_model = model.sources[0].n_items
    if log.n_items < n_model:
        raise InputError(
            f"the log has {log.n_items} articles, the model {n_model}: not this project's model?"
        )
    for source in model.sources:
        if isinstance(source, ContentSource):
            _check_order(source, log.texts[:n_model])
    new = slice(n_model, log.n_items)
    for source in model.sources:
        if isinstance(source, ContentSource):
            source.add_items(log.texts[new])
        elif isinstance(source, CovisitSource):
            source.add_items(log.n_items - n_model)
        elif isinstance(source, TrendingSource):
            _extend_trending(source, log, new)
        elif isinstance(source, ALSSource | ItemItemSource):  # offered sources (source_audit)
            source.add_items(log.n_items - n_model)
    return log.n_items - n_model


def _extend_trending(source: TrendingSource, log: NewsLog, new: slice) -> None:
    """New articles and every user's region, by region name (the log may know new regions)."""
    index = {r: j for j, r in enumerate(source.regions)}

    def ours(r: int, unknown: int) -> int:
        return index.get(log.regions[r], unknown) if r >= 0 else unknown

    item_region = np.array([ours(int(r), GLOBAL) for r in log.article_region[new]], np.int64)
    source.add_items(log.publish_s[new], item_region)
    user_region = np.array([ours(int(r), UNKNOWN) for r in log.user_region], np.int64)
    source.set_user_regions(np.arange(log.n_users, dtype=np.int64), user_region)


def _check_order(content: ContentSource, texts: list[str], sample: int = 32) -> None:
    if not texts:
        return
    idx = np.unique(np.linspace(0, len(texts) - 1, min(sample, len(texts))).astype(np.int64))
    fresh = content.embed([texts[i] for i in idx.tolist()])
    if not np.allclose(fresh, content.embeddings[idx], atol=1e-4):
        raise InputError(
            "the log's articles are no longer in the order the model was trained on "
            "(an article with an older publish time arrived later): retrain with `feedstack train`"
        )


def first_stage(c: Candidates, quotas: dict[str, int]) -> tuple[npt.NDArray[np.float32], IntArray]:
    """Per candidate row: the blend's score ``1 - min_s rank_s / k_s`` (its order, as a number
    in (0, 1]) and the source giving that best relative rank (ties: the first source)."""
    rel = np.stack(
        [c.feature(f"{s}_rank") / max(quotas.get(s, 1), 1) for s in c.source_names], axis=1
    )
    best = np.argmin(rel, axis=1).astype(np.int64)
    return (1.0 - rel.min(axis=1)).astype(np.float32), best


class CandidateJob:
    """Everything a batch of users needs, built once from the model and the log; ``lists``
    is the per-batch function (the local loop and the Spark tasks both call it, on any subset
    of users: each user's list depends on that user alone)."""

    def __init__(self, model: artifacts.LoadedModel, log: NewsLog, at_s: float) -> None:
        self.log = log
        self.at_s = at_s
        self._blend(model)
        max_age_s = float(model.meta["config"]["max_age_h"]) * 3600.0
        c = log.clicks
        self.history = ClickHistory.build(c.user, c.item, c.time_s, log.n_items)
        age = at_s - log.publish_s
        self.dead = ~np.asarray((age >= 0) & (age < max_age_s), dtype=bool)  # NaN: never published
        self._describe(model)

    def _blend(self, model: artifacts.LoadedModel) -> None:
        """The model's blend, its quotas, and users per batch: dense full-catalog scores cost
        about n_items x 4 bytes x (features + 24) per user, kept under BATCH_BYTES."""
        self.quotas = {str(k): int(v) for k, v in model.meta["blend"]["quotas"].items()}
        n_items = model.sources[0].n_items
        per_user = n_items * 4 * (sum(len(s.feature_names) for s in model.sources) + 24)
        self.batch = max(1, min(1000, BATCH_BYTES // per_user))
        size = int(model.meta["blend"]["size"])
        self.blend = Blend(model.sources, BlendConfig(size, self.quotas, self.batch))

    def _describe(self, model: artifacts.LoadedModel) -> None:
        """What every job records of its model: version, the catalog its lists index (the log's
        items; trending's per-region columns live there once), the state the sources hold."""
        self.version = str(model.meta.get("version") or model.folder.name)
        self.version_folder = model.folder.name
        self.catalog = build_catalog(model.sources, self.log, self.blend.feature_names)
        self.articles_added = 0
        self.model_state_bytes = sum(
            int(a.nbytes) for s in model.sources for a in s.arrays().values()
        )
        self.quarantined = 0  # offline rows set aside as unusable (see load_job)

    def lists(self, users: IntArray) -> dict[str, CandidateList]:
        """The lists of ``users`` (indices into the log's users; users with none skipped)."""
        log, at_s = self.log, self.at_s
        hist = self.history.rows(users, np.full(users.size, at_s))
        excluded = np.broadcast_to(self.dead, (users.size, log.n_items)).copy()
        excluded[hist.nonzero()] = True
        cands = self.blend.generate(users, hist, sp.csr_matrix(excluded))
        return self._pack(users, cands)

    def _pack(self, users: IntArray, cands: Candidates) -> dict[str, CandidateList]:
        log, at_s = self.log, self.at_s
        score, source = first_stage(cands, self.quotas)
        out: dict[str, CandidateList] = {}
        for b in range(users.size):
            lo, hi = int(cands.indptr[b]), int(cands.indptr[b + 1])
            if hi == lo:
                continue
            out[log.user_ids[int(users[b])]] = CandidateList(
                self.version,
                at_s,
                [log.article_ids[i] for i in cands.items[lo:hi].tolist()],
                score[lo:hi],
                source[lo:hi].astype(np.uint8),
                cands.source_names,
                np.ascontiguousarray(cands.features[lo:hi]),
                cands.feature_names,
                self.catalog,
                None,
                user_group(log, int(users[b])),
            )
        return out


class InteractionsJob(CandidateJob):
    """The candidate job of an interactions model (train/interactions.py): each user's whole
    click history (not a recent window), items the user has clicked excluded, no article age
    filter (the items are not news). The model's columns are its ``item_ids`` (items.npz); the
    log's items must start with them in that order, and items first seen after training are
    not candidates until the next training."""

    def __init__(self, model: artifacts.LoadedModel, log: NewsLog, at_s: float) -> None:
        self.log = log
        self.at_s = at_s
        n_items = model.sources[0].n_items
        item_ids = (model.items or {}).get("item_ids")
        if item_ids is None or item_ids.size != n_items:
            raise InputError(f"{model.folder}: an interactions model without its item ids")
        if log.n_items < n_items or list(log.article_ids[:n_items]) != item_ids.tolist():
            raise InputError(
                f"{model.folder}: the log's items are not the ones the model was trained on, "
                "in that order: retrain with `feedstack train`"
            )
        self._blend(model)
        c = log.clicks
        known = (c.item < n_items) & (c.time_s <= at_s)
        ones = np.ones(int(known.sum()), dtype=np.float32)
        matrix = sp.csr_matrix((ones, (c.user[known], c.item[known])), shape=(log.n_users, n_items))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        self.matrix = matrix
        self.dead = np.zeros(n_items, dtype=bool)
        self._describe(model)

    def lists(self, users: IntArray) -> dict[str, CandidateList]:
        hist = self.matrix[users]
        cands = self.blend.generate(users, hist, hist)
        return self._pack(users, cands)


def candidate_lists(
    model: artifacts.LoadedModel, log: NewsLog, at_s: float, say: Say | None = None
) -> Iterator[dict[str, CandidateList]]:
    """Lists of every user of the log, a batch of users at a time (users with none skipped)."""
    return job_lists(CandidateJob(model, log, at_s), say)


def job_lists(job: CandidateJob, say: Say | None = None) -> Iterator[dict[str, CandidateList]]:
    """``job.lists`` over every user of its log, a batch at a time."""
    log = job.log
    for start in range(0, log.n_users, job.batch):
        users = np.arange(start, min(start + job.batch, log.n_users), dtype=np.int64)
        out = job.lists(users)
        if say is not None:
            say(f"{int(users[-1]) + 1}/{log.n_users} users")
        yield out


def load_job(
    project: Path, version: str | None = None, at_s: float | None = None, sync: bool = True
) -> CandidateJob:
    """The candidate job of model ``version`` (default: the newest) as of ``at_s`` (default:
    just after the last logged event), over the project's offline log (synced from the event
    log first when ``sync``: the API may have appended events since the last file ingest)."""
    spec = load_spec(project)
    models = project / "models"
    if version is None:
        found = sorted(
            (p.name for p in models.glob("*") if (p / artifacts.MODEL_FILE).is_file()),
            key=artifacts.version_key,
        )
        if not found:
            raise InputError(f"no trained model under {models}; run `feedstack train` first")
        version = found[-1]
    model = artifacts.load(models / version)
    offline = open_offline_store(spec.backends.offline_store, project)
    if sync:
        event_log = open_event_log(spec.backends.event_log, project)
        try:
            offline.sync(event_log)
        finally:
            event_log.close()
    # Rows this job cannot use (a NUL in an article id, stored before ingest refused it) are
    # set aside in the dead-letter store, counted, and the other users still get their lists.
    log, quarantined = load_clean_log(project, spec, offline.root, "candidates build")
    when = float(np.nextafter(log.end_s, np.inf)) if at_s is None else float(at_s)
    if model.kind == artifacts.INTERACTIONS_KIND:
        added = 0
        job: CandidateJob = InteractionsJob(model, log, when)
    else:
        added = extend_sources(model, log)
        job = CandidateJob(model, log, when)
    job.version_folder = version
    job.articles_added = added
    job.quarantined = quarantined.quarantined
    return job


def build_candidate_cache(
    project: Path,
    version: str | None = None,
    cache: CandidateCache | None = None,
    at_s: float | None = None,
    say: Say | None = None,
) -> dict[str, Any]:
    """Fill the project's candidate cache (``backends.candidate_cache``) from model ``version``
    (default: the newest) as of ``at_s`` (default: just after the last logged event)."""
    began = time.perf_counter()
    spec = load_spec(project)
    job = load_job(project, version, at_s)
    log, when = job.log, job.at_s
    own = cache is None
    target = cache or open_candidate_cache(spec.backends.candidate_cache, project, timeout_s=30)
    users = written = rows = 0
    try:
        for lists in job_lists(job, say):
            written += target.put_many(lists)
            users += len(lists)
            rows += sum(len(c) for c in lists.values())
    finally:
        if own:
            target.close()
    seconds = time.perf_counter() - began
    return {
        "version": job.version_folder,
        "cache": target.url,
        "at_s": when,
        "users": users,
        "users_in_log": log.n_users,
        "articles": log.n_items,
        "articles_added": job.articles_added,
        "candidates_per_user": round(rows / users, 1) if users else 0.0,
        "bytes_per_user": round(written / users, 1) if users else 0.0,
        "bytes": written,
        "seconds": round(seconds, 3),
        "quarantined": job.quarantined,
        # What a serving process would hold to retrieve per request (the online pattern).
        "model_state_bytes": job.model_state_bytes,
    }
