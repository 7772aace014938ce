"""ALS on Spark: ``pyspark.ml.recommendation.ALS`` fits the item factors of the same artifact
(``ALSSource``, models/candidates/als.py) that implicit's solver fits on the local engine; the
rest (fold-in of each user's history, scoring, the blend) is the same code on either engine.

Both solve implicit-feedback ALS (Hu, Koren & Volinsky 2008) but are not the same solver, so
the factors differ and the comparison is a tolerance, not bits (tests/batch/test_spark_als.py):

- confidence: Spark uses ``1 + alpha * r``, implicit ``alpha * r`` (r = 1 here);
- regularization: Spark scales ``regParam`` by each user's (item's) number of interactions
  (ALS-WR); implicit uses one constant. We pass ``regParam = regularization / mean count``, so
  a user or item of average activity gets the same penalty;
- initialization and iteration order differ (random starts, CG vs Cholesky).

Stated tolerance (tests/batch/test_spark_als.py, 4 planted blocks of users and items, rank 4):
both engines reach the known answer (>= 95 % of each user's held-out block items in the top),
and the full-catalog scores of every user agree: mean Pearson correlation >= 0.99 and no score
apart by more than 0.05 (measured: 1.000 and 0.02). With more factors than the data has
structure, the extra factors fit noise differently (rank 8 on the same data: Pearson 0.95):
compare by recall there, not by scores.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from feedstack.batch.engine import Engine
from feedstack.models.candidates.als import ALSSource, ALSTrainer
from feedstack.models.interactions import InteractionData


def fit_als(engine: Engine, data: InteractionData, trainer: ALSTrainer) -> ALSSource:
    """Item factors from Spark's ALS, as an ``ALSSource`` (items never seen: zero factors)."""
    import pyarrow as pa
    from pyspark.ml.recommendation import ALS

    coo = data.matrix.tocoo()
    spark = engine.session()
    ratings = spark.createDataFrame(
        pa.table(
            {
                "user": coo.row.astype(np.int32),
                "item": coo.col.astype(np.int32),
                "rating": coo.data.astype(np.float32),
            }
        )
    ).repartition(engine.n_partitions())
    mean_count = max(1.0, float(data.nnz) / max(1, data.n_users))
    als = ALS(
        rank=trainer.factors,
        maxIter=trainer.iterations,
        regParam=trainer.regularization / mean_count,
        alpha=trainer.alpha,
        implicitPrefs=True,
        seed=trainer.seed,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        numUserBlocks=engine.n_partitions(),
        numItemBlocks=engine.n_partitions(),
        coldStartStrategy="drop",
    )
    model = als.fit(ratings)
    factors = np.zeros((data.n_items, trainer.factors), dtype=np.float32)
    table = model.itemFactors.toArrow()
    ids = table["id"].to_numpy()
    values = np.asarray(table["features"].to_pylist(), dtype=np.float32)
    if ids.size:
        factors[ids] = values
    params: dict[str, Any] = asdict(trainer)
    del params["name"]
    params["engine"] = engine.master
    return ALSSource(trainer.name, data.n_items, data.data_hash(), factors, params)
