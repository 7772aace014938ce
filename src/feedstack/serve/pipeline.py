"""The feed request path: the ``FeedService`` the HTTP and gRPC transports call.

    1 candidates     the user's list from the candidate cache (one read)
    2 user_features  the user's online row (one entity, Feast's online store)
    3 item_features  every candidate's article state (in memory: the item cache)
    4 rank           ranker features as training built them (serve/rerank.py), LightGBM, 1 thread
    5 filter         drop clicked, hidden and expired; at most N per topic in the top k; top k
    6 log            the served list, as an impression event, to the writer thread (serve/intake.py)

Degradation, never an error for a backend fault (``Feed.fallback`` says why, and the metric
``feedstack_fallbacks_total{reason}`` counts it):

- no list for the user (``cold_user``), the cache down (``cache_down``), the user's entry
  corrupt (``cache_corrupt``) or not fitting the model (``model_mismatch``), no model loaded
  (``no_model``), or the request already past the summed budgets of the stages before ranking
  (``candidates_timeout``, ``user_features_timeout``): the in-memory lists (trending,
  popular-by-region, fresh: serve/articles.py), filtered and diversified the same way;
- the online store down (``user_features_down``): the user's list is still ranked, with the
  features of a user the store does not know (what training gives an unseen user).

Budgets are the spec's (``serve.stage_shares`` of ``latency.p95_ms``); the reads' own timeouts are
their budgets, so a stuck backend costs one budget, not a request.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from feedstack.core.clock import Clock, SystemClock
from feedstack.core.errors import BackendUnavailable, DataError, FeedstackError, NotSupported
from feedstack.core.spec import Spec
from feedstack.features.item_cache import ItemFeatureCache
from feedstack.features.online_store import OnlineFeatureReader
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.records import RawRecord
from feedstack.models.rank.order import order_rows
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve import articles as art
from feedstack.serve.experiments import ExperimentRouter
from feedstack.serve.impressions import impression_payload
from feedstack.serve.intake import EventWriter
from feedstack.serve.models import ServingModel, ServingModels
from feedstack.serve.rerank import (
    ColumnPlan,
    context_features,
    diversify,
    keep,
    keep_items,
    user_context,
)
from feedstack.serve.types import Feed, FeedItem, IngestCounts
from feedstack.storage.candidate_cache import CandidateCache, CandidateList

log = logging.getLogger(__name__)
MAX_ERRORS = 20
_REMEMBERED = 100_000  # users' hides kept in memory (LRU)
# Requests' arms for click attribution (LRU): at 150 feeds/s per worker this is the last ~2
# minutes, when clicks come. 100,000 (~25 MB per worker) filled for 11 minutes under load and
# read as memory growth in the soak.
_SERVED_MEMO = 20_000
SNAPSHOT_EVERY_S = 1.0
INGEST_TIMEOUT_S = 30.0  # an API post waits this long for its commit, then answers 503


@dataclass(frozen=True)
class _Ranked:
    items: list[str]
    scores: list[float]
    sources: list[str]


class _Lru(OrderedDict[str, Any]):
    def __init__(self, size: int = _REMEMBERED) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class FeedPipeline:
    """A FeedService over injected parts (``build_service`` wires them from a project)."""

    def __init__(
        self,
        spec: Spec,
        models: ServingModels | None,
        candidates: CandidateCache,
        user_features: OnlineFeatureReader,
        items: ItemFeatureCache,
        ingestor: Ingestor | None = None,
        metrics: ServingMetrics | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
        background: bool = True,
        experiments: ExperimentRouter | None = None,
    ) -> None:
        self.spec = spec
        self.models = models
        self.experiments = experiments  # the running A/B test (serve/experiments.py), if any
        self.candidates = candidates
        self.user_features = user_features
        self.items = items
        self.ingestor = ingestor
        self.metrics = metrics or ServingMetrics(enabled=False)
        self.clock = clock or SystemClock()
        self._now = monotonic
        self.budgets_ms = spec.serve.budgets_ms(spec.latency)
        self.max_age_s = spec.serve.max_age_h * 3600.0
        self._plans: dict[tuple[tuple[str, ...], tuple[str, ...]], ColumnPlan | None] = {}
        self._hidden: _Lru = _Lru()
        self._served: _Lru = _Lru(_SERVED_MEMO)  # request id -> (version, arm): clicks per arm
        self._memo_lock = threading.Lock()
        self._snap = art.EMPTY
        self._refreshed = self._dirty = False
        self._next_snapshot = 0.0
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        # Every write (API posts, impressions) goes through one writer thread: group commits,
        # never on a feed thread.
        self.writer: EventWriter | None = None
        if ingestor is not None:
            self.writer = EventWriter(
                ingestor,
                spec.serve.impression_flush_s,
                on_error=lambda exc: self.metrics.errors.labels(
                    "impressions", type(exc).__name__
                ).inc(),
            )
        if models is not None:
            for arm, version in models.versions.items():
                self.metrics.model_info.labels(version, arm).set(1)
        self.refresh()
        self._warm_up()
        if background:
            self._refresher = threading.Thread(target=self._follow, name="item-cache", daemon=True)
            self._refresher.start()

    # ------------------------------------------------------------------ article state
    def refresh(self, timeout_s: float = 0.0, force: bool = False) -> int:
        """Apply new events to the item cache; publish a new article snapshot when something
        changed, at most every SNAPSHOT_EVERY_S (a snapshot of 10^5 articles with its fallback
        lists costs ~20 ms: at every 0.1 s poll it would take a fifth of a core). Articles
        published since the last snapshot are unknown to ranking until the next one."""
        applied = self.items.refresh(timeout_s)
        self._dirty = self._dirty or applied > 0
        now = time.monotonic()
        if force or not self._refreshed or (self._dirty and now >= self._next_snapshot):
            now_s = self.clock.now().timestamp()
            pool = self.spec.serve.fallback_pool
            self._snap = art.snapshot(self.items.agg, now_s, self.max_age_s, pool)
            self._refreshed, self._dirty = True, False
            self._next_snapshot = now + SNAPSHOT_EVERY_S
        return applied

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh(timeout_s=0.1)
            except FeedstackError as exc:  # the log is down: keep serving what we have
                log.warning("item cache refresh failed: %s", exc)
                self._stop.wait(1.0)

    def _warm_up(self) -> None:
        """One read of each backend before the first request: lazy imports (Feast's protos)
        and connections are paid here, not by a user."""
        for read in (lambda: self.candidates.get("\x00warm-up"), lambda: self._read_user("-")):
            try:
                read()
            except FeedstackError as exc:
                log.warning("warm-up read failed (serving degrades until it recovers): %s", exc)
        if self.models is not None:  # LightGBM's first predict allocates (~10-40 ms measured)
            extra = self.experiments.rankers if self.experiments is not None else []
            for model in filter(None, (self.models.champion, self.models.challenger, *extra)):
                rows = np.zeros(
                    (self.spec.serve.candidates_per_user, len(model.ranker.feature_names))
                )
                model.ranker.predict(rows.astype(np.float32), num_threads=1)
        self.items.features(self._snap.ids[: self.spec.serve.candidates_per_user], self._snap.at_s)

    # ------------------------------------------------------------------ FeedService
    def ready(self) -> tuple[bool, str]:
        if self.models is None:
            return False, "no trained model: run `feedstack train`"
        if not self._refreshed:
            return False, "item features not loaded yet"
        return True, ""

    def feed(
        self, user_id: str, k: int, region: str | None = None, request_id: str | None = None
    ) -> Feed:
        began = self._now()
        rid = request_id or uuid.uuid4().hex
        k = max(1, int(k))
        stage_ms: dict[str, float] = {}
        arm, model = ("champion", None) if self.models is None else self.models.route(user_id)
        experiment: str | None = None
        if self.experiments is not None and arm == "champion":  # canary users stay in the canary
            routed = self.experiments.route(user_id)
            experiment, arm, model = routed.experiment, routed.arm, routed.model
        popular = experiment is not None and model is None  # the arm's policy: fallback lists
        version = model.version if model is not None else "fallback"

        def lap(stage: str, since: float) -> float:
            t = self._now()
            stage_ms[stage] = (t - since) * 1000.0
            return t

        def late(*stages: str) -> bool:
            spent = (self._now() - began) * 1000.0
            return spent > sum(self.budgets_ms.get(s, 0.0) for s in stages)

        # 1 candidates
        t = began
        entry: CandidateList | None = None
        reason: str | None = None
        try:
            entry = self.candidates.get(user_id)
            self.metrics.cache.labels("hit" if entry is not None else "miss").inc()
            if entry is None or len(entry) == 0:
                reason = "cold_user"
            elif model is not None and self._plan(model, entry) is None:
                reason = "cache_stale"  # lists built for a model with other features
        except BackendUnavailable as exc:
            self.metrics.cache.labels("error").inc()
            log.debug("candidate cache: %s", exc)
            reason = "cache_down"
        except DataError as exc:  # our bytes, not the caller's fault: a fallback, never a 4xx
            self.metrics.cache.labels("corrupt").inc()
            log.warning("candidate cache entry of user %r: %s", user_id, exc)
            reason = "cache_corrupt"
        t = lap("candidates", t)
        if reason is None and late("candidates"):
            reason = "candidates_timeout"
        if popular:
            reason = None  # this arm serves the fallback lists by design, not as a degradation
        elif model is None:
            reason = "no_model"

        # 2 user features (read even for the fallback: clicks to filter, the region)
        user: dict[str, Any] | None = None
        down = False
        try:
            user = self._read_user(user_id)
        except BackendUnavailable as exc:
            log.debug("online store: %s", exc)
            down = True
        t = lap("user_features", t)
        if reason is None and late("candidates", "user_features"):
            reason = "user_features_timeout"
        at_s = self.clock.now().timestamp()
        snap = self._snap
        excluded = self._excluded(user_id, user)
        if region is None and user is not None and user.get("region") not in (None, "unknown"):
            region = str(user["region"])

        ranked: _Ranked | None = None
        if reason is None and entry is not None and model is not None:
            try:
                ranked = self._rank(entry, model, user, snap, excluded, at_s, k, stage_ms)
            except DataError as exc:  # a model that does not fit its lists: degrade
                log.warning("ranking with model %s failed: %s", model.version, exc)
                reason = "model_mismatch"
            # An interactions ranker reads no user features (its lists carry all it needs):
            # without the online store its feed is the same, not a degraded one.
            if down and ranked is not None and not model.interactions:
                reason = "user_features_down"
        if ranked is None:
            ranked = self._fallback(snap, region, excluded, at_s, k, model)
            t = lap("filter", t)
            # no model ranked these: their clicks are not the model's
            version = "popular" if popular and reason is None else "fallback"
        if reason is not None:
            self.metrics.fallbacks.labels(reason).inc()

        # 6 log the impression, off the hot path
        t = self._now()
        items = [
            FeedItem(i, s, src, p)
            for p, (i, s, src) in enumerate(
                zip(ranked.items, ranked.scores, ranked.sources, strict=True)
            )
        ]
        if items and self.writer is not None:
            payload = impression_payload(
                rid, user_id, ranked.items, version, self.clock.now(), experiment, arm
            )
            self.writer.log(payload)
            self.metrics.impressions.labels(version, arm).inc(len(items))
            with self._memo_lock:
                self._served.remember(rid, (version, arm))
        self.metrics.count_sources(ranked.sources)
        lap("log", t)
        self.metrics.observe_stages(stage_ms)
        self.metrics.arm_requests.labels(arm, "ok" if reason is None else "fallback").inc()
        self.metrics.arm_seconds.labels(arm).observe(sum(stage_ms.values()) / 1000.0)
        return Feed(rid, user_id, items, version, arm, reason, stage_ms, experiment)

    def ingest(self, payloads: Sequence[bytes]) -> IngestCounts:
        if self.writer is None:
            raise NotSupported("this service was built without an ingest pipeline")
        if not payloads:
            return IngestCounts(0, 0, 0)
        records = [RawRecord("api", i + 1, p) for i, p in enumerate(payloads)]
        try:  # durable once the writer's next commit returns
            result = self.writer.submit(records).result(timeout=INGEST_TIMEOUT_S)
        except FutureTimeout:  # it may still commit: a retry is deduplicated by event id
            raise BackendUnavailable(
                f"event log: the write took over {INGEST_TIMEOUT_S:g} s"
            ) from None
        bad = {r.line for r in result.rejections}
        self._observe_events([p for i, p in enumerate(payloads) if i + 1 not in bad])
        for name, n in (("accepted", result.accepted), ("duplicate", result.duplicates)):
            self.metrics.ingest.labels(name).inc(n)
        self.metrics.ingest.labels("rejected").inc(result.rejected)
        errors = [
            {"index": str(r.line - 1), "field": r.field, "reason": r.reason}
            for r in result.rejections[:MAX_ERRORS]
        ]
        return IngestCounts(result.accepted, result.duplicates, result.rejected, errors)

    def close(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(5.0)
        if self.writer is not None:
            self.writer.close()
        self.items.close()
        self.candidates.close()
        if self.ingestor is not None:
            self.ingestor.close()
        closer = getattr(self.user_features, "close", None)
        if closer is not None:
            closer()

    # ------------------------------------------------------------------ stages
    def _read_user(self, user_id: str) -> dict[str, Any] | None:
        return self.user_features.get_online("user_features", [user_id])[0]

    def _excluded(self, user_id: str, user: Mapping[str, Any] | None) -> set[str]:
        out = set(user.get("recent_clicks") or []) if user is not None else set()
        with self._memo_lock:
            hidden = self._hidden.get(user_id)
        return out | hidden if hidden else out

    def _plan(self, model: ServingModel, entry: CandidateList) -> ColumnPlan | None:
        """How to assemble this ranker's columns from these lists; None when the lists lack
        a feature the ranker reads (a new model, the cache not rebuilt yet)."""
        key = (tuple(model.ranker.feature_names), entry.feature_names)
        if key not in self._plans:
            try:
                self._plans[key] = ColumnPlan(model.ranker.feature_names, entry.feature_names)
            except DataError as exc:
                log.warning("candidate lists do not fit model %s: %s", model.version, exc)
                self._plans[key] = None
        return self._plans[key]

    def _rank(
        self,
        entry: CandidateList,
        model: ServingModel,
        user: Mapping[str, Any] | None,
        snap: art.ArticleSnapshot,
        excluded: set[str],
        at_s: float,
        k: int,
        stage_ms: dict[str, float],
    ) -> _Ranked:
        if model.interactions:
            return self._rank_items(entry, model, excluded, k, stage_ms)
        t = self._now()
        idx = snap.index(entry.items)
        item_rows = self.items.features(entry.items, at_s)
        t1 = self._now()
        stage_ms["item_features"] = (t1 - t) * 1000.0
        ctx = user_context(snap, idx, item_rows, user, at_s)
        plan = self._plan(model, entry)
        assert plan is not None  # checked in feed()
        x = plan.assemble(entry.features, context_features(ctx))
        scores = model.ranker.predict(x, num_threads=1)
        t2 = self._now()
        stage_ms["rank"] = (t2 - t1) * 1000.0
        ok = keep(entry.items, ctx.article[:, -1], excluded, self.spec.serve.max_age_h)
        cand = np.flatnonzero(ok)
        order = cand[np.lexsort((cand, -scores[cand]))]  # ties: first-stage order
        top = diversify(order, ctx.article_topic, k, self.spec.serve.max_per_topic)
        stage_ms["filter"] = (self._now() - t2) * 1000.0
        self.metrics.observe_scores(scores[top].tolist())
        names = entry.source_names
        return _Ranked(
            [entry.items[j] for j in top.tolist()],
            [float(s) for s in scores[top].tolist()],
            [names[int(s)] for s in entry.sources[top].tolist()],
        )

    def _rank_items(
        self,
        entry: CandidateList,
        model: ServingModel,
        excluded: set[str],
        k: int,
        stage_ms: dict[str, float],
    ) -> _Ranked:
        """An interactions model's list: the order ``feedstack evaluate`` scores
        (models/rank/order.py), minus what the user clicked or hid; no article age, no topics
        (its items are not news). Score: 1 / (1 + position)."""
        t = self._now()
        plan = self._plan(model, entry)
        assert plan is not None  # checked in feed()
        n = len(entry)
        x = plan.assemble(entry.features, np.zeros((n, 0), dtype=np.float32))
        indptr = np.array([0, n], dtype=np.int64)
        order = order_rows(model.ranker, x, indptr, model.depth, model.use_ranker, 1)
        t2 = self._now()
        stage_ms["rank"] = (t2 - t) * 1000.0
        ok = keep_items(entry.items, excluded)
        top = order[ok[order]][:k]
        stage_ms["filter"] = (self._now() - t2) * 1000.0
        names = entry.source_names
        return _Ranked(
            [entry.items[j] for j in top.tolist()],
            [1.0 / (1.0 + p) for p in range(top.size)],
            [names[int(s)] for s in entry.sources[top].tolist()],
        )

    def _fallback(
        self,
        snap: art.ArticleSnapshot,
        region: str | None,
        excluded: set[str],
        at_s: float,
        k: int,
        model: ServingModel | None = None,
    ) -> _Ranked:
        """The snapshot's merged fallback order (trending, popular-by-region, fresh in turn),
        filtered and diversified like a ranked list; for an interactions model with nothing
        live there, its most popular items. Score: 1 / (1 + position)."""
        if model is not None and model.interactions and model.popular:
            shown = keep_items(list(model.popular), excluded).tolist()
            ids = [i for i, good in zip(model.popular, shown, strict=True) if good][:k]
            return _Ranked(ids, [1.0 / (1.0 + p) for p in range(len(ids))], ["popular"] * len(ids))
        idx, labels = snap.fallback_order(region)
        ids = [snap.ids[j] for j in idx.tolist()]
        age_h = (at_s - snap.publish_s[idx]) / 3600.0 if idx.size else np.zeros(0)
        ok = np.flatnonzero(keep(ids, age_h, excluded, self.spec.serve.max_age_h))
        topic = snap.topic[idx] if idx.size else np.zeros(0, np.int64)
        top = diversify(ok, topic, k, self.spec.serve.max_per_topic)
        return _Ranked(
            [ids[j] for j in top.tolist()],
            [1.0 / (1.0 + p) for p in range(top.size)],
            [labels[j] for j in top.tolist()],
        )

    # ------------------------------------------------------------------ events seen by the API
    def _observe_events(self, payloads: Sequence[bytes]) -> None:
        """Hides filter this user's next feeds at once (the online store has no hides); clicks
        on a served request count for its model version and arm."""
        for p in payloads:
            try:
                ev = orjson.loads(p)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(ev, dict):
                continue
            kind = ev.get("type")
            if kind == "hide":
                user, item = str(ev.get("user_id")), str(ev.get("article_id"))
                with self._memo_lock:
                    hidden = self._hidden.get(user) or set()
                    hidden.add(item)
                    self._hidden.remember(user, hidden)
            elif kind == "click" and ev.get("request_id"):
                with self._memo_lock:
                    served = self._served.get(str(ev["request_id"]))
                if served is not None:
                    self.metrics.clicks.labels(*served).inc()
