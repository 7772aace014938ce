"""The candidate catalog of a build: the log's articles, the lists' names, and shared tables.

A shared table is one feature's value for every article as every user of one region sees it:
sources whose features depend on the user's region only, not on their history (trending), give
the same column to all of a region's users, so the catalog holds it once per region and each
list names its region instead of repeating it. The encoder uses a table only where the list's
values equal it bit for bit (storage/candidate_codec.py); anything else is coded in the list.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from feedstack.models.candidates.base import CandidateSource
from feedstack.models.candidates.trending import TrendingSource
from feedstack.storage.candidate_codec import F32, Catalog
from feedstack.train.newslog import NewsLog


def region_tables(sources: list[CandidateSource], log: NewsLog) -> dict[str, F32]:
    """``{"<region>/<feature>": values over the log's articles}`` of the region-only sources."""
    tables: dict[str, F32] = {}
    empty = sp.csr_matrix((1, log.n_items), dtype=np.float32)
    for source in sources:
        if not isinstance(source, TrendingSource):
            continue
        for r, region in enumerate(log.regions):
            users = np.flatnonzero(log.user_region == r)[:1].astype(np.int64)
            if users.size == 0:
                continue
            for name, values in source.feature_scores(users, empty).items():
                tables[f"{region}/{name}"] = np.ascontiguousarray(values[0], dtype=np.float32)
    return tables


def build_catalog(
    sources: list[CandidateSource], log: NewsLog, feature_names: tuple[str, ...]
) -> Catalog:
    names = tuple(s.name for s in sources)
    return Catalog.of(log.article_ids, (names, feature_names), region_tables(sources, log))


def user_group(log: NewsLog, user: int) -> str | None:
    r = int(log.user_region[user])
    return log.regions[r] if r >= 0 else None
