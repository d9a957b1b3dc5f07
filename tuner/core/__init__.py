"""What every layer shares: a trial's config, the metric registry, dataset facts, the Objective,
selection rules. No torch, Ray or MLflow at import."""
