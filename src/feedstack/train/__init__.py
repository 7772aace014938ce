"""Training orchestration: datasets, fitting, evaluation, model selection."""
