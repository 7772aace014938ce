"""The public accuracy benchmark: the two-stage recommender on the Gowalla LightGCN/NGCF split.

Runs ``feedstack.train.interactions.evaluate_split`` (fit on ``train.txt`` through the
``interactions`` recipe, save, load, score on ``test.txt``) in a child
process (bench/child.py), so that its peak memory is the child's own: everything the run
touched, nothing of the caller.

Targets (the two-stage issue's): Recall@20 >= 0.190 and NDCG@20 >= 0.160, fit + evaluation
<= 300 s on 2 cores, peak memory <= 8 GB. Published best on this split: SimpleX 0.1872 / 0.1557.

The data is read where it lies (``../shared/data/gowalla`` by default, or ``FEEDSTACK_GOWALLA``),
never copied. ``split="tuning"`` runs ``tuning/train.txt`` → ``tuning/valid.txt`` instead: the
only split hyper-parameters may be chosen on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from feedstack.bench.child import run_child
from feedstack.core.errors import InputError

RECALL_TARGET = 0.190
NDCG_TARGET = 0.160
SECONDS_TARGET = 300.0
MEMORY_TARGET_MB = 8192.0

_EVALUATE = """
import tempfile
from dataclasses import replace
from pathlib import Path
from feedstack.core.spec import Spec
from feedstack.train.interactions import config_of, evaluate_split
config = replace(config_of(Spec(), ARGS["seed"]), candidates=ARGS["candidates"])
with tempfile.TemporaryDirectory() as models:
    RESULT = evaluate_split(
        Path(ARGS["train"]), Path(ARGS["test"]), Path(models), k=ARGS["k"], config=config
    )
"""


def default_data_dir() -> Path:
    env = os.environ.get("FEEDSTACK_GOWALLA")
    return Path(env) if env else Path("..") / "shared" / "data" / "gowalla"


def split_files(data_dir: Path, split: str) -> tuple[Path, Path]:
    if split == "test":
        files = (data_dir / "train.txt", data_dir / "test.txt")
    elif split == "tuning":
        files = (data_dir / "tuning" / "train.txt", data_dir / "tuning" / "valid.txt")
    else:
        raise InputError(f"split must be 'test' or 'tuning', got {split!r}")
    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: no such file (set FEEDSTACK_GOWALLA to the data folder)")
    return files


def run_gowalla_bench(
    data_dir: Path | None = None,
    split: str = "test",
    k: int = 20,
    candidates: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation dict of one run, plus wall seconds, peak RSS and the targets met."""
    train, test = split_files(data_dir or default_data_dir(), split)
    args = {
        "train": str(train.resolve()),
        "test": str(test.resolve()),
        "k": k,
        "candidates": candidates,
        "seed": seed,
    }
    result: dict[str, Any]
    result, wall, peak_mb = run_child(_EVALUATE, args)
    total = result["fit_seconds"] + result["eval_seconds"]
    result.update(
        {
            "split": split,
            "wall_seconds": wall,
            "peak_rss_mb": peak_mb,
            "targets": {
                f"recall@{k}": RECALL_TARGET,
                f"ndcg@{k}": NDCG_TARGET,
                "fit_plus_eval_seconds": SECONDS_TARGET,
                "peak_rss_mb": MEMORY_TARGET_MB,
            },
            "meets": {
                f"recall@{k}": result[f"recall@{k}"] >= RECALL_TARGET,
                f"ndcg@{k}": result[f"ndcg@{k}"] >= NDCG_TARGET,
                "fit_plus_eval_seconds": total <= SECONDS_TARGET,
                "peak_rss_mb": peak_mb <= MEMORY_TARGET_MB,
            },
        }
    )
    return result
