"""A newly published article is recommendable within seconds: the serving process's item cache
knows it after one refresh of the log tail, and the content source (fitted before the article
existed) embeds it from its text and ranks it first for a reader of a near-identical story."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from feedstack.core.events import ArticlePublished, Click
from feedstack.core.spec import load_spec, write_default_spec
from feedstack.features.item_cache import ItemFeatureCache
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import read_jsonl
from feedstack.models.candidates.content import ContentTrainer
from feedstack.world import NewsWorld, WorldConfig, write_world


def test_new_article_is_recommendable_within_seconds(tmp_path: Path) -> None:
    config = WorldConfig(users=200, articles=150, days=0.5, seed=5)
    write_world(config, tmp_path / "world")
    write_default_spec(tmp_path / "p")
    ing = Ingestor.from_spec(load_spec(tmp_path / "p"), tmp_path / "p")
    ing.ingest(read_jsonl(tmp_path / "world" / "events.jsonl"))

    world = NewsWorld(config)
    articles = world.article_ids()
    texts = [world.article(a).title + " " + world.article(a).text for a in articles]
    content = ContentTrainer(dims=32).fit(texts)  # fitted before the new article exists
    cache = ItemFeatureCache.open(ing.log)
    cache.refresh()
    assert cache.size > 0

    # Publish a rewrite of article 0, and a click on article 0 by a reader.
    source = world.article(articles[0])
    t = config.end + timedelta(minutes=1)
    new = ArticlePublished(
        event_id="fresh-1",
        event_time=t,
        article_id="fresh-article",
        title=source.title,
        text=source.text + " update",
        topic=source.topic,
        region=source.region,
        publish_time=t,
    )
    click = Click(event_id="fresh-2", event_time=t, user_id="reader", article_id=articles[0])
    began = time.monotonic()
    ing.log.append([new, click])
    cache.refresh(timeout_s=1.0)
    row = cache.features(["fresh-article"], t.timestamp() + 5)
    assert not np.isnan(row).any(), row  # known: age and counts (zero so far)
    content.add_items([new.title + " " + new.text])  # embedded from its text alone
    history = sp.csr_matrix(
        (np.ones(1, np.float32), ([0], [0])), shape=(1, content.n_items), dtype=np.float32
    )
    items, _ = content.recommend(np.zeros(1, np.int64), history, k=1, exclude=history)
    assert int(items[0, 0]) == len(articles)  # the new article ranks first
    assert time.monotonic() - began < 5.0
    ing.close()
