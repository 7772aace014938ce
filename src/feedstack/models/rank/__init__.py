"""Re-rankers over candidate rows: LightGBM LambdaRank (``lgbm``)."""
