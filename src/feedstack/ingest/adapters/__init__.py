"""Dataset adapters: public datasets in their own formats -> RawRecords of feedstack events.

    movielens   u.data / ratings.dat / ratings.csv (+ titles beside them)   ratings -> clicks
    mind        MIND behaviors.tsv + news.tsv                               impressions, clicks
    lightgcn    LightGCN/NGCF ``user item item ...`` (Gowalla, Yelp2018)    clicks, synthetic times
    mapped      any CSV/Parquet with map.<field>=<column> options          one event per row

``open_adapter`` checks the name, the options and every file before it returns, so a bad
invocation raises InputError before anything is ingested; the contract is in ``base.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from feedstack.core.errors import InputError
from feedstack.ingest.adapters import lightgcn, mapped, mind, movielens
from feedstack.ingest.adapters.base import Adapter
from feedstack.ingest.records import RawRecord

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (movielens.ADAPTER, mind.ADAPTER, lightgcn.ADAPTER, mapped.ADAPTER)
}


def open_adapter(name: str, paths: list[Path], options: Mapping[str, str]) -> Iterator[RawRecord]:
    """The records of ``paths`` read by adapter ``name``; InputError for anything unusable."""
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise InputError(f"unknown dataset adapter {name!r}; valid: {', '.join(sorted(ADAPTERS))}")
    adapter.check_options(options)
    return adapter.open([Path(p) for p in paths], options)


__all__ = ["ADAPTERS", "Adapter", "open_adapter"]
