"""Model versions and how traffic reaches them: the MLflow registry (every trained model folder a
run and a version), the rollout state and its pure controller (canary, rollback, promotion),
stable assignment of users to arms, and A/B experiments with their statistics."""
