"""One trial, without Ray or MLflow: its networks, losses, miners, samplers, metrics, loop and
figures."""
